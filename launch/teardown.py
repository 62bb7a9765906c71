"""Taking down what the launcher made: an endpoint with its scaling, config and models; a job stopped.

`delete=<endpoint>` and `cleanup=` share these, so an endpoint always goes the same way: its Application
Auto Scaling policies and target first (a target left behind points at nothing and keeps its alarms),
then the endpoint, its endpoint config and the models its variants serve.
"""

from __future__ import annotations

from typing import Any

SCALING = {"ServiceNamespace": "sagemaker", "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}


def scaling_resource(endpoint: str, variant: str) -> str:
    """The variant as Application Auto Scaling names it."""
    return f"endpoint/{endpoint}/variant/{variant}"


def remove_autoscaling(boto: Any, endpoint: str, variants: list[str]) -> list[str]:
    """Deregister the variants' scalable targets, their policies first; returns what went."""
    client, gone = boto.client("application-autoscaling"), []
    ids = [scaling_resource(endpoint, v) for v in variants]
    targets = client.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=ids)[
        "ScalableTargets"
    ]
    for target in targets:
        resource = target["ResourceId"]
        policies = client.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)
        for policy in policies["ScalingPolicies"]:
            client.delete_scaling_policy(PolicyName=policy["PolicyName"], ResourceId=resource, **SCALING)
            gone.append(f"deleted scaling policy {policy['PolicyName']}")
        client.deregister_scalable_target(ResourceId=resource, **SCALING)
        gone.append(f"deregistered scalable target {resource}")
    return gone


def delete_endpoint(boto: Any, name: str) -> list[str]:
    """Scaling, endpoint, endpoint config, models; returns what went, in order, as lines to print."""
    client = boto.client("sagemaker")
    config_name = client.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    variants = client.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
    gone = remove_autoscaling(boto, name, [v["VariantName"] for v in variants])
    client.delete_endpoint(EndpointName=name)
    client.delete_endpoint_config(EndpointConfigName=config_name)
    gone += [f"deleted endpoint {name}", f"deleted endpoint config {config_name}"]
    for model in dict.fromkeys(v["ModelName"] for v in variants):
        client.delete_model(ModelName=model)
        gone.append(f"deleted model {model}")
    return gone


STOP = {
    "training": ("stop_training_job", "TrainingJobName"),
    "tuning": ("stop_hyper_parameter_tuning_job", "HyperParameterTuningJobName"),
    "transform": ("stop_transform_job", "TransformJobName"),
}
DELETE = {
    "endpoint-config": ("delete_endpoint_config", "EndpointConfigName"),
    "model": ("delete_model", "ModelName"),
}


def take_down(boto: Any, kind: str, name: str) -> list[str]:
    """An endpoint deleted with all it uses, a config or model deleted, a job asked to stop."""
    if kind == "endpoint":
        return delete_endpoint(boto, name)
    operation, key = STOP.get(kind) or DELETE[kind]
    getattr(boto.client("sagemaker"), operation)(**{key: name})
    return [f"asked {kind} job {name} to stop" if kind in STOP else f"deleted {kind} {name}"]
