"""What this project has in the region, found by its tags (`launch.tags`), and what each costs.

Endpoints, endpoint configs and models are listed whole; training, tuning and transform jobs when running or
created in the last `recent_days`. Every listed resource's tags are read (ListTags), and only the ones with
`dogbreed:project=<prefix>` are kept; each of those is described for its instances and times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from launch import prices
from launch.tags import EXPIRES, PROJECT, tag_map

# kind: (list operation, its list key, name key, ARN key, describe operation, its name parameter)
KINDS = {
    "endpoint": ("list_endpoints", "Endpoints", "EndpointName", "EndpointArn", "describe_endpoint"),
    "endpoint-config": (
        "list_endpoint_configs",
        "EndpointConfigs",
        "EndpointConfigName",
        "EndpointConfigArn",
        "describe_endpoint_config",
    ),
    "model": ("list_models", "Models", "ModelName", "ModelArn", None),
    "training": (
        "list_training_jobs",
        "TrainingJobSummaries",
        "TrainingJobName",
        "TrainingJobArn",
        "describe_training_job",
    ),
    "tuning": (
        "list_hyper_parameter_tuning_jobs",
        "HyperParameterTuningJobSummaries",
        "HyperParameterTuningJobName",
        "HyperParameterTuningJobArn",
        "describe_hyper_parameter_tuning_job",
    ),
    "transform": (
        "list_transform_jobs",
        "TransformJobSummaries",
        "TransformJobName",
        "TransformJobArn",
        "describe_transform_job",
    ),
}
JOBS = ("training", "tuning", "transform")
RUNNING = {"InProgress", "Stopping", "Creating", "Updating", "SystemUpdating"}


@dataclass(frozen=True)
class Found:
    """One tagged resource: its kind, name, tags and describe reply (empty for models)."""

    kind: str
    name: str
    created: datetime
    status: str
    tags: dict[str, str]
    detail: dict[str, Any] = field(default_factory=dict)


def _summaries(client: Any, kind: str, recent_days: float) -> list[dict[str, Any]]:
    operation, key = KINDS[kind][:2]
    if kind not in JOBS:
        return [s for page in client.get_paginator(operation).paginate() for s in page[key]]
    since = datetime.now(UTC) - timedelta(days=recent_days)
    recent = [
        s for page in client.get_paginator(operation).paginate(CreationTimeAfter=since) for s in page[key]
    ]
    running = [
        s for page in client.get_paginator(operation).paginate(StatusEquals="InProgress") for s in page[key]
    ]
    unique = {s[KINDS[kind][2]]: s for s in [*running, *recent]}
    return list(unique.values())


def _status(summary: dict[str, Any]) -> str:
    for key in ("EndpointStatus", "TrainingJobStatus", "HyperParameterTuningJobStatus", "TransformJobStatus"):
        if key in summary:
            return summary[key]
    return ""


def find(
    boto: Any, prefix: str, kinds: tuple[str, ...] = tuple(KINDS), recent_days: float = 7
) -> list[Found]:
    """Every resource of `kinds` tagged `dogbreed:project=<prefix>`, described."""
    client, found = boto.client("sagemaker"), []
    for kind in kinds:
        _, _, name_key, arn_key, describe = KINDS[kind]
        for summary in _summaries(client, kind, recent_days):
            tags = tag_map(client.list_tags(ResourceArn=summary[arn_key]).get("Tags", []))
            if tags.get(PROJECT) != prefix:
                continue
            name = summary[name_key]
            detail = getattr(client, describe)(**{name_key: name}) if describe else {}
            if kind == "endpoint":
                detail["Config"] = client.describe_endpoint_config(
                    EndpointConfigName=detail["EndpointConfigName"]
                )
            found.append(Found(kind, name, summary["CreationTime"], _status(summary), tags, detail))
    return found


def variants(endpoint: Found) -> list[dict[str, Any]]:
    """An endpoint's variants as its config states them, with the live instance count where known."""
    live = {v["VariantName"]: v for v in endpoint.detail.get("ProductionVariants", [])}
    out = []
    for v in endpoint.detail["Config"]["ProductionVariants"]:
        serverless = v.get("ServerlessConfig")
        count = live.get(v["VariantName"], {}).get("CurrentInstanceCount") or v.get("InitialInstanceCount")
        out.append({**v, "Count": None if serverless else count, "ServerlessConfig": serverless})
    return out


def in_use(found: list[Found]) -> tuple[set[str], set[str]]:
    """(endpoint configs, models) that a listed endpoint serves."""
    endpoints = [f for f in found if f.kind == "endpoint"]
    configs = {e.detail["EndpointConfigName"] for e in endpoints}
    models = {v["ModelName"] for e in endpoints for v in e.detail["Config"]["ProductionVariants"]}
    return configs, models


def hours(since: datetime, until: datetime | None = None) -> float:
    return max(0.0, ((until or datetime.now(UTC)) - since).total_seconds() / 3600)


def endpoint_hourly(endpoint: Found) -> float | None:
    """Instances × their price; a serverless variant costs nothing while idle (None: a price is missing)."""
    total = 0.0
    for v in variants(endpoint):
        if v["ServerlessConfig"]:
            continue
        price = prices.inference_hourly(v["InstanceType"])
        if price is None:
            return None
        total += price * v["Count"]
    return total


def job_resources(job: Found) -> tuple[str, int]:
    """(instance type, count) a job runs on."""
    d = job.detail
    if job.kind == "transform":
        return d["TransformResources"]["InstanceType"], d["TransformResources"]["InstanceCount"]
    config = d["ResourceConfig"] if job.kind == "training" else d["TrainingJobDefinition"]["ResourceConfig"]
    return config["InstanceType"], config["InstanceCount"]


def trials_at_once(tuning: Found) -> int:
    """How many of a tuning job's trials run at once: its hourly bound is that many trials' instances."""
    return tuning.detail["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxParallelTrainingJobs"]


def job_price(job: Found) -> float | None:
    """One of the job's instances per hour: transform at the inference price, the others at training's."""
    instance_type = job_resources(job)[0]
    if job.kind == "transform":
        return prices.inference_hourly(instance_type)
    return prices.training_hourly(instance_type)


def job_cost(job: Found) -> tuple[float | None, float | None]:
    """(per hour while running, to date): instance-hours so far × the instance's price. A tuning job's
    trials are training jobs that carry its tags (the service copies them), so its cost is on their lines:
    (None, None) for the tuning job itself, never counted twice."""
    d = job.detail
    count = job_resources(job)[1]
    hourly = job_price(job)
    if hourly is None or job.kind == "tuning":
        return None, None
    if job.kind == "training" and d.get("BillableTimeInSeconds"):
        spent = d["BillableTimeInSeconds"] / 3600
    else:
        start = d.get("TrainingStartTime") or d.get("TransformStartTime") or job.created
        spent = hours(start, d.get("TrainingEndTime") or d.get("TransformEndTime"))
    return hourly * count, hourly * count * spent


def overdue(endpoint: Found) -> float | None:
    """Hours an endpoint is past its `deploy.expires_after` (None: not past it, or none set)."""
    limit = endpoint.tags.get(EXPIRES)
    if limit is None:
        return None
    late = hours(endpoint.created) - float(limit)
    return late if late > 0 else None


def cleanup_hint(name: str) -> str:
    return f"python launch/sagemaker.py cleanup={name}"


def warn_expired(boto: Any, prefix: str) -> None:
    """Every command's warning about an endpoint past its time (a role that may not list them: silence)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        endpoints = find(boto, prefix, ("endpoint",))
    except (BotoCoreError, ClientError):
        return
    for endpoint in endpoints:
        late = overdue(endpoint)
        if late is not None:
            print(
                f"warning: endpoint {endpoint.name} is {late:.1f} h past its expires_after of "
                f"{endpoint.tags[EXPIRES]} h; delete it: {cleanup_hint(endpoint.name)}"
            )
