"""`delete=<endpoint>`: its scaling policies and target, the endpoint, its endpoint config and its models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from omegaconf import DictConfig

from launch.command import Command


def send(cfg: DictConfig, boto: boto3.Session, requests: Any, run_dir: Path) -> str:
    """Delete them and say what went."""
    from launch.teardown import delete_endpoint

    for what in delete_endpoint(boto, cfg.delete):
        print(what)
    return cfg.delete


def intent(cfg: DictConfig) -> dict[str, dict[str, tuple[str, Any]]]:
    return {"DeleteEndpoint": {"EndpointName": ("delete", cfg.delete)}}


COMMAND = Command(key="delete", usage="delete=<endpoint>", send=send, intent=intent)
