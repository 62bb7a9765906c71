"""`deploy=default|torchserve|serverless`: a real-time or serverless endpoint for a training job's
model.tar.gz, or that model here.

A training job run by this launcher writes `code/` (the library, each serving image's entry) into its
model directory, so its `model.tar.gz` deploys as it is: on AWS's Ray Serve image (`deploy=default`) or
SageMaker's PyTorch inference image (`deploy=torchserve`), with `dogbreed.container.ENDPOINT_ENVIRONMENT`
(and `TOOLKIT_ENVIRONMENT` on the PyTorch image) and the deploy config's `environment`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import boto3
from omegaconf import DictConfig

from dogbreed.container import ENDPOINT_ENVIRONMENT, TOOLKIT_ENVIRONMENT, TS_PER_MODEL
from dogbreed.errors import DogBreedError
from dogbreed.serving.replicas import serve_settings
from launch import deploy_options
from launch.aws import job_name, job_output_path
from launch.command import Command
from launch.images import image_uri

RAY_SERVE_IMAGE = "ray-serve"  # conf/launch/images/ray-serve.yaml: the image that runs the Ray Serve app
TORCHSERVE_IMAGE = "pytorch-inference"  # conf/launch/images/pytorch-inference.yaml: TorchServe + the toolkit


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


def check_ray_settings(spec: DictConfig) -> None:
    """The Ray Serve app's own check of its Environment (`dogbreed.serving.replicas.serve_settings`), here
    before anything is created: otherwise the endpoint would fail in the container, minutes later."""
    if spec.image != RAY_SERVE_IMAGE:
        return
    try:
        serve_settings({key: str(value) for key, value in spec.environment.items()})
    except ValueError as exc:
        raise DogBreedError(f"deploy.environment: {exc}") from None


def check_torchserve_settings(spec: DictConfig) -> None:
    """What ts.properties needs on the PyTorch inference image, here before anything is created: the worker
    count it reads (the toolkit's default, one per vCPU, has no value to name), and SAGEMAKER_TS_* that
    TorchServe and our handler can honour."""
    if spec.image != TORCHSERVE_IMAGE:
        return
    workers = str(spec.environment.get("SAGEMAKER_MODEL_SERVER_WORKERS", ""))
    if not workers.isdigit() or int(workers) < 1:
        raise DogBreedError(
            f"deploy.environment.SAGEMAKER_MODEL_SERVER_WORKERS={workers or None}: set TorchServe's worker "
            "count, a whole number ≥ 1 (conf/launch/deploy/torchserve.yaml measured 2 on 2 cores)"
        )
    given = per_model_given(spec)
    for key, value in given.items():
        least = 0 if key == "SAGEMAKER_TS_MAX_BATCH_DELAY" else 1
        if key not in TS_PER_MODEL:
            raise DogBreedError(f"deploy.environment.{key}: the toolkit reads only {', '.join(TS_PER_MODEL)}")
        if not value.isdigit() or int(value) < least:
            raise DogBreedError(f"deploy.environment.{key}={value}: a whole number ≥ {least}")
    if given.get("SAGEMAKER_TS_BATCH_SIZE", "1") != "1":
        raise DogBreedError(
            f"deploy.environment.SAGEMAKER_TS_BATCH_SIZE={given['SAGEMAKER_TS_BATCH_SIZE']}: the toolkit "
            "hands every request of a TorchServe batch the first one's Content-Type, Accept and "
            "CustomAttributes (top_k), so this image serves batches of 1; deploy=default batches"
        )
    settings = toolkit_settings(spec)
    if int(settings["SAGEMAKER_TS_MIN_WORKERS"]) > int(settings["SAGEMAKER_TS_MAX_WORKERS"]):
        raise DogBreedError(
            f"deploy.environment: SAGEMAKER_TS_MIN_WORKERS={settings['SAGEMAKER_TS_MIN_WORKERS']} is more "
            f"than SAGEMAKER_TS_MAX_WORKERS={settings['SAGEMAKER_TS_MAX_WORKERS']}"
        )


def per_model_given(spec: DictConfig) -> dict[str, str]:
    """The SAGEMAKER_TS_* that the deploy config sets, as text."""
    return {str(k): str(v) for k, v in spec.environment.items() if str(k).startswith("SAGEMAKER_TS_")}


def toolkit_settings(spec: DictConfig) -> dict[str, str]:
    """The five SAGEMAKER_TS_* that ts.properties' `models=` line reads, as the toolkit derives its own:
    while none is set, the model's workers and timeout (what TorchServe runs without the line); once any
    is, the toolkit's defaults for the rest, so one worker unless the workers are set too."""
    given = {k: v for k, v in per_model_given(spec).items() if k in TS_PER_MODEL}
    if given:
        return {**TS_PER_MODEL, **given}
    workers = str(spec.environment.SAGEMAKER_MODEL_SERVER_WORKERS)
    timeout = spec.environment.get("SAGEMAKER_MODEL_SERVER_TIMEOUT")
    return {
        **TS_PER_MODEL,
        "SAGEMAKER_TS_MIN_WORKERS": workers,
        "SAGEMAKER_TS_MAX_WORKERS": workers,
        "SAGEMAKER_TS_RESPONSE_TIMEOUT": str(
            timeout or TOOLKIT_ENVIRONMENT["SAGEMAKER_MODEL_SERVER_TIMEOUT"]
        ),
    }


def fewer_workers(spec: DictConfig) -> str | None:
    """One line when a SAGEMAKER_TS_* setting leaves the worker count to the toolkit's default (1), as it
    does on the image: otherwise the drop from SAGEMAKER_MODEL_SERVER_WORKERS goes unseen."""
    given = set(per_model_given(spec)) & set(TS_PER_MODEL)
    workers = {"SAGEMAKER_TS_MIN_WORKERS", "SAGEMAKER_TS_MAX_WORKERS"}
    if spec.image != TORCHSERVE_IMAGE or not given or workers <= given:
        return None
    settings = toolkit_settings(spec)
    least, most = settings["SAGEMAKER_TS_MIN_WORKERS"], settings["SAGEMAKER_TS_MAX_WORKERS"]
    return (
        f"note: with {', '.join(sorted(given))} set, the toolkit's defaults fill the other SAGEMAKER_TS_*: "
        f"{least if least == most else f'{least} to {most}'} worker(s), not "
        f"SAGEMAKER_MODEL_SERVER_WORKERS={spec.environment.SAGEMAKER_MODEL_SERVER_WORKERS}; set "
        "SAGEMAKER_TS_MIN_WORKERS and SAGEMAKER_TS_MAX_WORKERS too"
    )


def container_environment(spec: DictConfig) -> dict[str, str]:
    """CreateModel's Environment: what our handler needs, what the image's configuration reads, then the
    deploy config's own."""
    if spec.image != TORCHSERVE_IMAGE:
        return {**ENDPOINT_ENVIRONMENT, **spec.environment}
    return {**ENDPOINT_ENVIRONMENT, **TOOLKIT_ENVIRONMENT, **toolkit_settings(spec), **spec.environment}


def send(cfg: DictConfig, boto: boto3.Session, requests: Any, run_dir: Path) -> str:
    """CreateModel, CreateEndpointConfig (instances or serverless), CreateEndpoint, then the autoscaling
    requests when `deploy.autoscaling.max` is set; returns the endpoint name."""
    from sagemaker.core.resources import Endpoint, EndpointConfig, Model
    from sagemaker.core.shapes import ContainerDefinition

    spec = cfg.deploy
    check_ray_settings(spec)
    check_torchserve_settings(spec)
    if (note := fewer_workers(spec)) is not None:
        print(note)
    model_data = model_data_url(cfg, boto)
    image = image_uri(spec.image, boto.region_name, spec.instance_type)
    name = spec.endpoint_name or job_name(cfg, "ep")
    if deploy_options.serverless(spec) is not None:
        print(deploy_options.serverless_limits(spec))
    Model.create(
        model_name=name,
        primary_container=ContainerDefinition(
            image=image, model_data_url=model_data, environment=container_environment(spec)
        ),
        execution_role_arn=cfg.role_arn,
        session=boto,
    )
    EndpointConfig.create(
        endpoint_config_name=name,
        production_variants=[deploy_options.production_variant(spec, name)],
        session=boto,
    )
    endpoint = Endpoint.create(endpoint_name=name, endpoint_config_name=name, session=boto)
    # a replay serves the model here instead; registering a scalable target needs the endpoint InService
    if not cfg.dry_run and ((cfg.wait and not cfg.replay) or deploy_options.autoscaled(spec)):
        endpoint.wait_for_status("InService")
    if deploy_options.autoscaled(spec):
        deploy_options.register_autoscaling(boto, spec, name)
    print(f"endpoint {name}\ndelete it with: python launch/sagemaker.py delete={name}")
    return name


def replay(cfg: DictConfig, requests: Any, run_dir: Path) -> None:
    """The endpoint of the CreateModel request as sent, served on `local_port` until Ctrl-C."""
    from launch.replay import s3_client
    from launch.replay.endpoint import replay_endpoint

    replay_endpoint(requests.of("CreateModel")[-1], s3_client(cfg), run_dir / "replay", cfg.local_port)


def latest_model(outputs: Path) -> Path:
    found = sorted(outputs.glob("**/model.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DogBreedError(f"no model.tar.gz under {outputs}; run instance=local train=default first")
    return found[-1]


def local(cfg: DictConfig, run_dir: Path) -> None:
    """A local training job's model.tar.gz (the newest, or deploy.training_job=<path>) served until Ctrl-C."""
    from dogbreed.processes import run_child

    model = Path(cfg.deploy.training_job) if cfg.deploy.training_job else latest_model(Path("outputs/launch"))
    print(f"serving {model} on http://127.0.0.1:{cfg.local_port} (Ctrl-C stops it)", flush=True)
    run_child([sys.executable, "-m", "dogbreed.serve", str(model), "--port", str(cfg.local_port)])


def intent(cfg: DictConfig) -> dict[str, dict[str, tuple[str, Any]]]:
    """What the endpoint's requests must carry of `deploy.*` and the role (a serverless variant carries its
    memory and concurrency instead of an instance type and count; an autoscaled one its scaling too)."""
    spec, variant = cfg.deploy, "ProductionVariants[0]"
    named = {"EndpointName": ("deploy.endpoint_name", spec.endpoint_name)} if spec.endpoint_name else {}
    if deploy_options.serverless(spec) is not None:
        sized = {
            f"{variant}.ServerlessConfig.MemorySizeInMB": (
                "deploy.serverless.memory_mb",
                spec.serverless.memory_mb,
            ),
            f"{variant}.ServerlessConfig.MaxConcurrency": (
                "deploy.serverless.max_concurrency",
                spec.serverless.max_concurrency,
            ),
        }
    else:
        sized = {
            f"{variant}.InitialInstanceCount": ("deploy.initial_instance_count", spec.initial_instance_count),
            f"{variant}.InstanceType": ("deploy.instance_type", spec.instance_type),
        }
    return {
        "CreateModel": {"ExecutionRoleArn": ("role_arn", cfg.role_arn)},
        "CreateEndpointConfig": sized,
        "CreateEndpoint": named,
        **(deploy_options.autoscaling_intent(spec) if deploy_options.autoscaled(spec) else {}),
    }


COMMAND = Command(
    key="deploy",
    usage="deploy=default|torchserve|serverless",
    send=send,
    replay=replay,
    local=local,
    cost=deploy_options.cost,
    check=deploy_options.check,
    intent=intent,
)
