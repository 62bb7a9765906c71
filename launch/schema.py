"""The launcher config's schema: `conf/launch/launch.yaml` and its groups (instance, hpo, train, deploy).

Checked by `check_launch` before the launcher's Hydra app makes its run dir, then the command's own `check`
(for `train=` and `hpo=`: the training config a job composes, against `dogbreed.training.schema`), so a
wrong value stops the command before any download, upload or request. Where SageMaker bounds a value, the
bound is read from botocore's service model (offline); our own minimum is stricter where the service's
allows a value that means nothing (0 instances).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from omegaconf import DictConfig, OmegaConf
from pydantic import Discriminator, Field, Tag, model_validator

from dogbreed.schema import Section, Text, validate
from dogbreed.training.metric_lines import metric_definitions


@cache
def _shape(operation: str, path: str) -> Any:
    """A member's shape in SageMaker's service model: `CreateTrainingJob`, `ResourceConfig.InstanceCount`."""
    import botocore.session

    shape = (
        botocore.session.get_session().get_service_model("sagemaker").operation_model(operation).input_shape
    )
    for name in path.split("."):
        shape = shape.members[name]
    return shape


def service_min(operation: str, path: str, ours: int = 1) -> int:
    """The larger of our minimum and the service's."""
    return max(ours, int(_shape(operation, path).metadata.get("min", ours)))


def service_enum(operation: str, path: str) -> Any:
    return Literal[tuple(_shape(operation, path).enum)]


TUNING = "CreateHyperParameterTuningJob"
METRICS = Literal[tuple(d["Name"] for d in metric_definitions())]
# ProfilerConfig.ProfilingIntervalInMilliseconds: the values SageMaker documents (its model has no enum)
PROFILING_INTERVALS = Literal[100, 200, 500, 1000, 5000, 60000]
NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$"  # what SageMaker's resource names allow


class LocalInstance(Section):
    name: Literal["local"]


class CloudInstance(Section):
    name: str
    type: service_enum("CreateTrainingJob", "ResourceConfig.InstanceType")  # type: ignore[valid-type]
    count: int = Field(ge=1, description="instances per job; 0 would leave InstanceCount out of the request")
    volume_gb: int = Field(ge=1, description="the job's storage volume")
    max_runtime_s: int = Field(
        ge=service_min("CreateTrainingJob", "StoppingCondition.MaxRuntimeInSeconds"), le=28 * 24 * 3600
    )
    spot: bool
    max_wait_s: int = Field(ge=service_min("CreateTrainingJob", "StoppingCondition.MaxWaitTimeInSeconds"))
    price_per_hour_usd: float = Field(ge=0)

    @model_validator(mode="after")
    def _spot_waits_at_least_the_runtime(self) -> CloudInstance:
        if self.spot and self.max_wait_s < self.max_runtime_s:
            raise ValueError(
                f"max_wait_s={self.max_wait_s}: must be ≥ max_runtime_s ({self.max_runtime_s}) for spot "
                "training (SageMaker's rule: waiting includes running)"
            )
        return self


def _instance_kind(value: Any) -> str:
    name = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
    return "local" if name == "local" else "cloud"


Instance = Annotated[
    Annotated[LocalInstance, Tag("local")] | Annotated[CloudInstance, Tag("cloud")],
    Discriminator(_instance_kind),
]


class Objective(Section):
    metric: METRICS
    direction: Literal["maximize", "minimize"]


class Hpo(Section):
    objective: Objective
    max_jobs: int = Field(
        ge=service_min(TUNING, "HyperParameterTuningJobConfig.ResourceLimits.MaxNumberOfTrainingJobs"),
        le=10000,
        description="trials in all; SageMaker's MaxNumberOfTrainingJobs",
    )
    max_parallel_jobs: int = Field(
        ge=service_min(TUNING, "HyperParameterTuningJobConfig.ResourceLimits.MaxParallelTrainingJobs"),
        description="trials at once; SageMaker's MaxParallelTrainingJobs",
    )
    strategy: service_enum(TUNING, "HyperParameterTuningJobConfig.Strategy")  # type: ignore[valid-type]
    early_stopping: service_enum(TUNING, "HyperParameterTuningJobConfig.TrainingJobEarlyStoppingType")  # type: ignore[valid-type]
    seed: int = Field(ge=service_min(TUNING, "HyperParameterTuningJobConfig.RandomSeed", 0))
    # each parameter: dogbreed.hparams.SearchSpace, whose bounds the training schema checks too
    params: dict[str, dict[str, Any]] = Field(min_length=1)

    @model_validator(mode="after")
    def _parallel_within_the_budget(self) -> Hpo:
        if self.max_parallel_jobs > self.max_jobs:
            raise ValueError(
                f"max_parallel_jobs={self.max_parallel_jobs}: must be ≤ max_jobs ({self.max_jobs})"
            )
        return self


class Train(Section):
    debugger: bool
    profiler: bool
    collections: list[str] = Field(default_factory=list)
    save_interval: int = Field(100, ge=1, description="steps between saved tensors")
    rules: list[str] = Field(default_factory=list)
    profiler_interval_ms: PROFILING_INTERVALS = 500  # type: ignore[valid-type]
    profiler_rules: list[str] = Field(default_factory=list)


class Serverless(Section):
    memory_mb: int = Field(
        ge=1024, le=6144, multiple_of=1024, description="serverless memory is 1024 to 6144 MB in 1 GB steps"
    )
    max_concurrency: int = Field(ge=1, le=200, description="concurrent requests: 1 to 200")


class Autoscaling(Section):
    max: int | None = Field(ge=1, description="instances at most; null: no autoscaling")
    min: int = Field(ge=1, description="instances at least")
    target_invocations: float = Field(gt=0, description="invocations per instance per minute")
    scale_in_cooldown_s: int = Field(ge=0)
    scale_out_cooldown_s: int = Field(ge=0)


class Deploy(Section):
    image: Text
    training_job: Text | None
    instance_type: str | None  # null: a serverless endpoint
    initial_instance_count: int | None = Field(ge=1, description="an endpoint needs an instance to answer")
    endpoint_name: str | None = Field(pattern=NAME, max_length=63)
    environment: dict[str, str] = Field(
        description="CreateModel's Environment holds text: quote a number, +deploy.environment.NAME='2'"
    )
    expires_after: float | None = Field(gt=0, description="hours until status and every command warn")
    autoscaling: Autoscaling | dict[str, None]
    serverless: Serverless = None  # type: ignore[assignment]  # absent unless deploy=serverless


class Transform(Section):
    model: str | None
    instance_type: str
    instance_count: int = Field(ge=1, description="instances for the job")
    max_payload_mb: int = Field(ge=1, le=100, description="MaxPayloadInMB: 1–100")
    max_concurrent: int | None = Field(ge=1)
    invocation_timeout_s: int = Field(ge=1, le=3600)
    retries: int = Field(ge=0, le=3)


class Launch(Section):
    instance: Instance
    hpo: Hpo | None = None
    train: Train | None = None
    deploy: Deploy = None  # type: ignore[assignment]  # absent unless deploy=…
    transform: Transform | None = None
    experiment: Text
    overrides: list[str]
    hparams: Text | None
    invoke: str | None
    image: Text | None
    delete: str | None
    input: Text | None
    status: bool
    status_days: int = Field(ge=1)
    cleanup: str | None
    yes: bool
    dry_run: bool
    replay: bool
    replay_trials: int = Field(ge=1)
    wait: bool
    poll_seconds: float = Field(gt=0)
    local_port: int = Field(ge=1, le=65535)
    region: str | None
    role_arn: str | None
    bucket: str | None
    prefix: str = Field(pattern=NAME, max_length=20, description="job names start with it")
    training_image: Text
    telemetry: bool


def check_launch(cfg: DictConfig) -> None:
    """The launcher's settings against the schema (the training overrides are the `train=` and `hpo=`
    commands' `check`: what a job composes depends on the command)."""
    values = {
        str(key): OmegaConf.to_container(cfg[key], resolve=True)
        if OmegaConf.is_config(cfg[key])
        else cfg[key]
        for key in cfg
        if key != "hydra"  # Hydra's own node is Hydra's to check
    }
    validate(Launch, values)
