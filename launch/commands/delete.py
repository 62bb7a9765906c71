"""`delete=<endpoint>`: the endpoint, its endpoint config and its models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from omegaconf import DictConfig

from launch.command import Command


def send(cfg: DictConfig, boto: boto3.Session, requests: Any, run_dir: Path) -> str:
    """Delete them and say what went."""
    client = boto.client("sagemaker")
    name = cfg.delete
    config_name = client.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    config = client.describe_endpoint_config(EndpointConfigName=config_name)
    models = [v["ModelName"] for v in config["ProductionVariants"]]
    client.delete_endpoint(EndpointName=name)
    client.delete_endpoint_config(EndpointConfigName=config_name)
    for model in models:
        client.delete_model(ModelName=model)
    for what in [f"endpoint {name}", f"endpoint config {config_name}", *(f"model {m}" for m in models)]:
        print(f"deleted {what}")
    return name


def intent(cfg: DictConfig) -> dict[str, dict[str, tuple[str, Any]]]:
    return {"DeleteEndpoint": {"EndpointName": ("delete", cfg.delete)}}


COMMAND = Command(key="delete", usage="delete=<endpoint>", send=send, intent=intent)
