"""The tags every resource the launcher creates carries, added to each Create request on the session.

One handler on the boto3 session (the one the SageMaker SDK and our own code share) adds them, so no
command can forget them: `dogbreed:project` (the `prefix`), `dogbreed:kind` (from the operation) and
`dogbreed:run` (the run folder that created it); an endpoint with `deploy.expires_after` also carries
`dogbreed:expires-after-hours`. `status` and `cleanup` find resources by these tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from botocore.model import OperationModel
from omegaconf import DictConfig

PROJECT, KIND, RUN, EXPIRES = (
    "dogbreed:project",
    "dogbreed:kind",
    "dogbreed:run",
    "dogbreed:expires-after-hours",
)
KINDS = {
    "CreateModel": "model",
    "CreateEndpointConfig": "endpoint-config",
    "CreateEndpoint": "endpoint",
    "CreateTrainingJob": "training",
    "CreateHyperParameterTuningJob": "tuning",
    "CreateTransformJob": "transform",
    "RegisterScalableTarget": "scaling-target",
}


def run_label(run_dir: Path) -> str:
    """The run folder's last two parts (`2026-12-01/10-00-00`): enough to find its requests/ again."""
    return "/".join(Path(run_dir).resolve().parts[-2:])


def tags_for(cfg: DictConfig, operation: str, run_dir: Path) -> dict[str, str]:
    tags = {PROJECT: cfg.prefix, KIND: KINDS[operation], RUN: run_label(run_dir)}
    deploy = cfg.get("deploy")
    if operation == "CreateEndpoint" and deploy is not None and deploy.get("expires_after"):
        tags[EXPIRES] = f"{float(deploy.expires_after):g}"
    return tags


def tag_requests(boto: boto3.Session, cfg: DictConfig, run_dir: Path) -> None:
    """Add the tags to every Create request sent on `boto`, before it is recorded and checked."""

    def add(params: dict[str, Any], model: OperationModel, **_: Any) -> None:
        if model.name not in KINDS or "Tags" not in model.input_shape.members:
            return
        ours = tags_for(cfg, model.name, run_dir)
        if model.input_shape.members["Tags"].type_name == "map":  # Application Auto Scaling's TagMap
            params["Tags"] = {**ours, **params.get("Tags", {})}
            return
        given = {t["Key"] for t in params.get("Tags", [])}
        params["Tags"] = [
            *params.get("Tags", []),
            *({"Key": k, "Value": v} for k, v in ours.items() if k not in given),
        ]

    boto.events.register_first("provide-client-params.*.*", add)


def tag_map(tags: list[dict[str, str]]) -> dict[str, str]:
    """ListTags' `[{Key, Value}]` as a dict."""
    return {t["Key"]: t["Value"] for t in tags}
