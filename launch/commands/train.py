"""`train=default|debugger`: a SageMaker training job for `dogbreed.train`, or the same job here.

The job runs the same entry point as a laptop: the container gets `dogbreed/` and `conf/` as source code,
`train.py` calls `dogbreed.train.cli`, and hyperparameters arrive as `--name value` through the table in
`dogbreed.hparams` (read inside the job by `dogbreed.container`). ModelTrainer builds the request;
`train=debugger` adds the Debugger and Profiler fields v3's ModelTrainer lacks and submits it with
`sagemaker.core.resources.TrainingJob.create`. A tuning job's trials (`launch.commands.hpo`) are the plain
job of `model_trainer`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3
from omegaconf import DictConfig

from dogbreed.container import CONTAINER_HAS, FILE_CHANNEL, container_requirements, lay_out_opt_ml
from dogbreed.errors import DogBreedError
from dogbreed.hparams import HYPERPARAMETERS, from_overrides, read_hparams
from dogbreed.training.metric_lines import metric_definitions
from launch.aws import job_output_path
from launch.command import Command
from launch.images import check_pins, image_uri

REPO = Path(__file__).resolve().parents[2]
JOB = "the training job"  # in its requirements.txt's header
# The job's log names what it runs on (Python and torch are the image's, not our pins).
ENTRY = """import platform

import torch

from dogbreed.train import cli

print(f"train.py: Python {platform.python_version()}, torch {torch.__version__}", flush=True)
cli()
"""


def debugged(cfg: DictConfig) -> bool:
    """Debugger or Profiler on (`train=debugger`); a tuning job's trials (no `train=`) are plain jobs."""
    spec = cfg.get("train")
    return bool(spec is not None and (spec.debugger or spec.profiler))


def hyperparameters(cfg: DictConfig) -> dict[str, Any]:
    """`experiment`, then a best_hparams.yaml, then training overrides, as the job's hyperparameters."""
    values: dict[str, Any] = {"experiment": cfg.experiment}
    if debugged(cfg):
        values["debug"] = "on"  # dogbreed's own rules and report run in the job too
    if cfg.hparams:
        values.update(read_hparams(cfg.hparams))
    # data.root (and data.url, where to fetch it when missing) is the local dataset to upload; in the job
    # the data channel is the root
    values.update(from_overrides(cfg.overrides, skip={"data.root", "data.url"}))
    return values


def parse_list(raw: str) -> list[str]:
    """A list as a Hydra override spells it (`[a,b]`, `["a"]`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    value = OverridesParser.create().parse_overrides([f"x={raw}"])[0].value()
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def stage_source(workdir: Path) -> Path:
    """`dogbreed/`, `conf/`, `train.py`, `requirements.txt` and `pyproject.toml`: what the container runs."""
    source = workdir / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "dogbreed", source / "dogbreed", ignore=ignore)
    # the training app's configs; conf/launch/ is this launcher's and stays here
    shutil.copytree(REPO / "conf", source / "conf", ignore=shutil.ignore_patterns("launch", "__pycache__"))
    (source / "train.py").write_text(ENTRY)
    (source / "requirements.txt").write_text(container_requirements(None, JOB))
    shutil.copy2(
        REPO / "pyproject.toml", source / "pyproject.toml"
    )  # the requirements' source, in the job too
    return source


def model_trainer(cfg: DictConfig, boto: boto3.Session, name: str, workdir: Path) -> Any:
    """ModelTrainer for the configured instance, image, code, hyperparameters, spot and distribution."""
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.shapes import CheckpointConfig, MetricDefinition, OutputDataConfig
    from sagemaker.core.training.configs import Compute, SourceCode, StoppingCondition
    from sagemaker.train import ModelTrainer
    from sagemaker.train.distributed import Torchrun

    inst = cfg.instance
    image = image_uri(cfg.training_image, boto.region_name, inst.type)
    debugger_on = cfg.get("train") is not None and cfg.train.debugger
    stopping = {"max_runtime_in_seconds": inst.max_runtime_s}
    if inst.spot:
        stopping["max_wait_time_in_seconds"] = inst.max_wait_s
    trainer = ModelTrainer(
        training_image=image,
        source_code=SourceCode(
            source_dir=str(stage_source(workdir)), entry_script="train.py", requirements="requirements.txt"
        ),
        compute=Compute(
            instance_type=inst.type,
            instance_count=inst.count,
            volume_size_in_gb=inst.volume_gb,
            enable_managed_spot_training=bool(inst.spot),
        ),
        distributed=Torchrun() if inst.count > 1 else None,
        stopping_condition=StoppingCondition(**stopping),
        role=cfg.role_arn,
        base_job_name=name,
        hyperparameters=hyperparameters(cfg),
        # smdebug's generated protobuf code predates protobuf 4, which TensorBoard needs: the pure-Python
        # protobuf runtime reads both (checked with smdebug 1.0.34 in tests/test_debug.py)
        environment={"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"} if debugger_on else None,
        output_data_config=OutputDataConfig(s3_output_path=job_output_path(cfg)),
        sagemaker_session=Session(boto_session=boto, default_bucket=cfg.bucket),
    )
    trainer = trainer.with_metric_definitions(
        [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in metric_definitions()]
    )
    if inst.spot:
        trainer = trainer.with_checkpoint_config(
            CheckpointConfig(
                s3_uri=f"s3://{cfg.bucket}/{cfg.prefix}/checkpoints/{name}", local_path="/opt/ml/checkpoints"
            )
        )
    return trainer


def debug_rules(cfg: DictConfig, image: str, job: str, stop_on: list[str]) -> list[Any]:
    """Debugger's built-in rules of `train.rules`, through the SDK's `Rule.sagemaker`; the ones that
    `debug.stop_on` names (as dogbreed's rules) get Debugger's StopTraining action for this job."""
    from sagemaker.core.debugger import Rule, rule_configs
    from sagemaker.core.shapes import DebugRuleConfiguration

    from dogbreed.debug import RULES

    debugger_names = {cls.debugger_name: name for name, cls in RULES.items() if cls.debugger_name}
    unknown = sorted(set(stop_on) - set(RULES))
    if unknown:
        raise DogBreedError(f"debug.stop_on names {unknown}, not dogbreed rules: {', '.join(RULES)}")
    out = []
    for name in cfg.train.rules:
        ours = debugger_names.get(name)
        stop = ours in stop_on
        base = getattr(rule_configs, _snake(name))()
        rule = Rule.sagemaker(
            base, actions=rule_configs.ActionList(rule_configs.StopTraining()) if stop else None
        )
        rule.image_uri = image
        rule.prepare_actions(job)  # StopTraining: this job's name as the prefix of the job to stop
        request = rule.to_debugger_rule_config_dict()
        out.append(
            DebugRuleConfiguration(
                rule_configuration_name=request["RuleConfigurationName"],
                rule_evaluator_image=request["RuleEvaluatorImage"],
                rule_parameters=request["RuleParameters"],
            )
        )
    return out


def _snake(name: str) -> str:
    """`LossNotDecreasing` → `loss_not_decreasing` (the SDK's rule_configs spelling)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def profiler_rules(names: list[str], image: str) -> list[Any]:
    from sagemaker.core.shapes import ProfilerRuleConfiguration

    return [
        ProfilerRuleConfiguration(
            rule_configuration_name=n, rule_evaluator_image=image, rule_parameters={"rule_to_invoke": n}
        )
        for n in names
    ]


def debugger_fields(cfg: DictConfig, region: str, job: str, output: str) -> dict[str, Any]:
    """Debugger hook + rules and Profiler + ProfilerReport, as CreateTrainingJob fields."""
    from sagemaker.core import image_uris
    from sagemaker.core.shapes import CollectionConfiguration, DebugHookConfig, ProfilerConfig

    fields: dict[str, Any] = {}
    rules_image = image_uris.retrieve("debugger", region=region)
    if cfg.train.debugger:
        save = {"save_interval": str(cfg.train.save_interval)}
        fields["debug_hook_config"] = DebugHookConfig(
            s3_output_path=f"{output}/debug-output",
            collection_configurations=[
                CollectionConfiguration(collection_name=c, collection_parameters=save)
                for c in cfg.train.collections
            ],
        )
        stop_on = parse_list(hyperparameters(cfg).get("stop_on", "[]"))
        fields["debug_rule_configurations"] = debug_rules(cfg, rules_image, job, stop_on)
    if cfg.train.profiler:
        fields["profiler_config"] = ProfilerConfig(
            s3_output_path=f"{output}/profiler-output",
            profiling_interval_in_milliseconds=cfg.train.profiler_interval_ms,
        )
        fields["profiler_rule_configurations"] = profiler_rules(cfg.train.profiler_rules, rules_image)
    return fields


def send(cfg: DictConfig, boto: boto3.Session, requests: Any, run_dir: Path) -> str:
    """Create the training job, without waiting for it; returns its name."""
    from sagemaker.core.resources import TrainingJob
    from sagemaker.core.training.configs import InputData

    from launch.aws import job_name
    from launch.data import data_channel

    uri = data_channel(cfg, boto, run_dir)
    kind = "debug" if debugged(cfg) else "train"
    with tempfile.TemporaryDirectory(prefix="dogbreed-") as workdir:
        # ModelTrainer appends a timestamp of its own to the name
        trainer = model_trainer(cfg, boto, job_name(cfg, kind, stamp=False), Path(workdir))
        channels = [InputData(channel_name="training", data_source=uri)]
        if not debugged(cfg):
            trainer.train(input_data_config=channels, wait=False, logs=False)
        else:  # ModelTrainer builds (and uploads) the request; Debugger/Profiler fields go on top of it
            request = trainer._create_training_job_args(input_data_config=channels)
            job = request["training_job_name"]
            fields = debugger_fields(cfg, boto.region_name, job, f"{job_output_path(cfg)}/{job}")
            TrainingJob.create(session=boto, **request, **fields)
    name = requests.of("CreateTrainingJob")[-1]["TrainingJobName"]
    print(f"training job {name}")
    return name


def follow(cfg: DictConfig, boto: boto3.Session, name: str, run_dir: Path) -> None:
    """Wait with a live line; then each Debugger rule's status and the reports the job left."""
    from launch import watch

    reply = watch.wait_training(boto.client("sagemaker"), name, cfg.poll_seconds)
    for rule, status in watch.rule_statuses(reply):
        print(f"rule {rule:<28} {status}")
    if debugged(cfg):
        for path in watch.download_reports(
            boto.client("s3"), cfg.bucket, f"{cfg.prefix}/jobs/{name}", run_dir
        ):
            print(f"report: {path}")


def replay(cfg: DictConfig, requests: Any, run_dir: Path) -> None:
    """The job run here from the CreateTrainingJob request as sent."""
    from launch.replay import s3_client
    from launch.replay.jobs import replay_training

    replay_training(requests.of("CreateTrainingJob")[-1], s3_client(cfg), run_dir / "replay")
    if cfg.train.debugger:
        print(
            "replay: Debugger's rule containers are not replayed; dogbreed's rules ran in the job (debug=on)"
        )


def local(cfg: DictConfig, run_dir: Path) -> None:
    """The job here: our entry point under the container contract in an /opt/ml-style tree (host
    `localhost`: other names make the toolkit wait for DNS), then model.tar.gz packed as SageMaker would."""
    from dogbreed.processes import run_child
    from dogbreed.serving.package import build_model_tar
    from launch.data import prepared_data

    values = {name: str(value) for name, value in hyperparameters(cfg).items()}  # SageMaker sends strings
    tree = run_dir / "opt_ml"
    env = {**os.environ, **lay_out_opt_ml(tree, values, {"training": FILE_CHANNEL}, host="localhost")}
    data = tree / "input" / "data" / "training"
    if not data.exists():
        data.symlink_to(prepared_data(cfg, run_dir).resolve(), target_is_directory=True)
    args = [arg for name, value in values.items() for arg in (f"--{name}", value)]
    if run_child([sys.executable, "-m", "dogbreed.train", *args], env=env) != 0:
        raise DogBreedError(f"local training job failed; its output is in {tree / 'output'}")
    print(f"model: {build_model_tar(tree / 'model', run_dir / 'model.tar.gz')}")


def sent_as(value: Any) -> str:
    """A hyperparameter as the request carries it: text as it is, anything else as JSON (the SDK's
    `safe_serialize`)."""
    return value if isinstance(value, str) else json.dumps(value)


def job_intent(
    cfg: DictConfig, hyperparameters_field: str = "HyperParameters", skip: set[str] = frozenset()
) -> dict[str, tuple[str, Any]]:
    """What a training job's request must carry of the config (a tuning job's definition too, with its
    static hyperparameters less the tuned `skip`)."""
    inst = cfg.instance
    fields: dict[str, tuple[str, Any]] = {
        "ResourceConfig.InstanceType": ("instance.type", inst.type),
        "ResourceConfig.InstanceCount": ("instance.count", inst.count),
        "ResourceConfig.VolumeSizeInGB": ("instance.volume_gb", inst.volume_gb),
        "StoppingCondition.MaxRuntimeInSeconds": ("instance.max_runtime_s", inst.max_runtime_s),
        "EnableManagedSpotTraining": ("instance.spot", bool(inst.spot)),
        "RoleArn": ("role_arn", cfg.role_arn),
        "OutputDataConfig.S3OutputPath": ("bucket/prefix", job_output_path(cfg)),
    }
    if inst.spot:
        fields["StoppingCondition.MaxWaitTimeInSeconds"] = ("instance.max_wait_s", inst.max_wait_s)
    for name, value in hyperparameters(cfg).items():
        if name not in skip:
            key = HYPERPARAMETERS[name].lstrip("+")
            fields[f"{hyperparameters_field}.{name}"] = (key, sent_as(value))
    spec = cfg.get("train")
    if spec is not None and spec.debugger:
        for i, name in enumerate(spec.collections):
            collection = f"DebugHookConfig.CollectionConfigurations[{i}]"
            fields[f"{collection}.CollectionName"] = (f"train.collections[{i}]", name)
            fields[f"{collection}.CollectionParameters.save_interval"] = (
                "train.save_interval",
                str(spec.save_interval),
            )
    if spec is not None and spec.profiler:
        fields["ProfilerConfig.ProfilingIntervalInMilliseconds"] = (
            "train.profiler_interval_ms",
            spec.profiler_interval_ms,
        )
    return fields


def intent(cfg: DictConfig) -> dict[str, dict[str, tuple[str, Any]]]:
    return {"CreateTrainingJob": job_intent(cfg)}


def check_job_config(cfg: DictConfig) -> None:
    """The training config a job composes (its experiment, `debug=on` for Debugger, the overrides, the
    hparams file) passes the training schema."""
    from dogbreed.training.config import compose_training
    from dogbreed.training.schema import check_training

    debug = ["debug=on"] if debugged(cfg) else []
    hparams = [f"+hparams={cfg.hparams}"] if cfg.hparams else []
    check_training(compose_training([f"+experiment={cfg.experiment}", *debug, *cfg.overrides, *hparams]))


def check_image_pins(cfg: DictConfig) -> None:
    """The requirements.txt a job ships agrees with every pin of its image (`training_image`): the image's
    packages are never reinstalled there, so a conflict would only show in the job."""
    left_out = ", ".join(sorted(CONTAINER_HAS))
    where = f"the training job's requirements.txt (pyproject.toml's dependencies less {left_out})"
    check_pins(container_requirements(None, JOB), where, cfg.training_image)


def check(cfg: DictConfig) -> None:
    """Before anything is uploaded: the job's training config passes the schema, every override has a
    hyperparameter name to reach the job by (the local twin passes them the same way), and a job's
    requirements agree with its image."""
    check_job_config(cfg)
    hyperparameters(cfg)
    if cfg.instance.name != "local":
        check_image_pins(cfg)


def cost(cfg: DictConfig) -> tuple[float, str]:
    """One job on `instance.count` instances for its whole max runtime."""
    inst = cfg.instance
    usd = inst.count * inst.max_runtime_s / 3600 * inst.price_per_hour_usd
    return usd, f" ({inst.name} at ${inst.price_per_hour_usd}/h × max runtime)"


COMMAND = Command(
    key="train",
    usage="train=default|debugger",
    send=send,
    follow=follow,
    replay=replay,
    local=local,
    cost=cost,
    check=check,
    intent=intent,
)
