"""Real-time endpoints: deploy a training job's model.tar.gz with dogbreed's handler, invoke, delete.

A training job run by `launch/sagemaker.py` writes `code/` (handler + library) into its model directory, so
its `model.tar.gz` is deployable as it is, on SageMaker's PyTorch inference image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from omegaconf import DictConfig

from dogbreed.errors import DogBreedError
from launch.aws import job_name
from launch.training import job_output_path, pytorch_image


def latest_training_job(boto: boto3.Session, prefix: str) -> str:
    jobs = boto.client("sagemaker").list_training_jobs(
        NameContains=prefix,
        StatusEquals="Completed",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=1,
    )["TrainingJobSummaries"]
    if not jobs:
        raise DogBreedError(
            f"no completed training job named {prefix}-…; run train=default first or pass "
            "deploy.training_job=<name>"
        )
    return jobs[0]["TrainingJobName"]


def model_data_url(cfg: DictConfig, boto: boto3.Session) -> str:
    """The training job's model.tar.gz; in a dry run, where the job writes it (nothing can be looked up)."""
    job = cfg.deploy.training_job
    if cfg.dry_run:
        if not job:
            raise DogBreedError(
                "a dry run sends nothing, so it cannot look up the latest training job: "
                "name one with deploy.training_job=<training job name>"
            )
        return f"{job_output_path(cfg)}/{job}/output/model.tar.gz"  # the service's layout under S3OutputPath
    job = job or latest_training_job(boto, cfg.prefix)
    reply = boto.client("sagemaker").describe_training_job(TrainingJobName=job)
    return reply["ModelArtifacts"]["S3ModelArtifacts"]


def deploy(cfg: DictConfig, boto: boto3.Session) -> str:
    """CreateModel, CreateEndpointConfig, CreateEndpoint; returns the endpoint name."""
    from sagemaker.core.resources import Endpoint, EndpointConfig, Model
    from sagemaker.core.shapes import ContainerDefinition, ProductionVariant

    spec = cfg.deploy
    model_data = model_data_url(cfg, boto)
    image = pytorch_image(cfg, boto.region_name, spec.instance_type, "inference")
    name = spec.endpoint_name or job_name(cfg, "ep")
    Model.create(
        model_name=name,
        primary_container=ContainerDefinition(
            image=image,
            model_data_url=model_data,
            environment={
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            },
        ),
        execution_role_arn=cfg.role_arn,
        session=boto,
    )
    EndpointConfig.create(
        endpoint_config_name=name,
        production_variants=[
            ProductionVariant(
                variant_name="AllTraffic",
                model_name=name,
                initial_instance_count=spec.initial_instance_count,
                instance_type=spec.instance_type,
            )
        ],
        session=boto,
    )
    endpoint = Endpoint.create(endpoint_name=name, endpoint_config_name=name, session=boto)
    if cfg.wait and not cfg.dry_run and not cfg.replay:  # a replay serves the model here instead
        endpoint.wait_for_status("InService")
    return name


def invoke(cfg: DictConfig, boto: boto3.Session) -> list[dict[str, Any]]:
    from dogbreed.serving.predict import endpoint_classifier, format_predictions

    if not cfg.image:
        raise DogBreedError("invoke=<endpoint> needs image=<path to a photo>")
    image = Path(cfg.image)
    if not image.is_file():
        raise DogBreedError(f"image={image} does not exist")
    predictions = endpoint_classifier(cfg.invoke, boto.region_name, boto)(image.read_bytes(), "image/jpeg", 5)
    print(format_predictions(str(image), predictions))
    return predictions


def delete(cfg: DictConfig, boto: boto3.Session) -> list[str]:
    """The endpoint, its endpoint config and its models; returns what was deleted."""
    client = boto.client("sagemaker")
    name = cfg.delete
    config_name = client.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    config = client.describe_endpoint_config(EndpointConfigName=config_name)
    models = [v["ModelName"] for v in config["ProductionVariants"]]
    client.delete_endpoint(EndpointName=name)
    client.delete_endpoint_config(EndpointConfigName=config_name)
    for model in models:
        client.delete_model(ModelName=model)
    return [f"endpoint {name}", f"endpoint config {config_name}", *(f"model {m}" for m in models)]
