"""The SageMaker container contract, in one place below everything that honours it.

What a job or endpoint container sees, and what we must give it:
- inside a training job: `train --lr 0.001 --batch-size "64"` (tuning jobs JSON-quote values) with `SM_*`
  variables naming the data channel and output folders, under `/opt/ml` (`SAGEMAKER_BASE_DIR` elsewhere);
  the table of `dogbreed.hparams` maps each hyperparameter to its Hydra key (an unknown name is an error);
- the `/opt/ml` tree a job starts in (`lay_out_opt_ml`: the local twin and replay build it with it);
- an endpoint's `Environment` (`ENDPOINT_ENVIRONMENT`; `TOOLKIT_ENVIRONMENT` on the PyTorch image) and
  where the model is unpacked (`MODEL_DIR`);
- what the images already have, so a `requirements.txt` never reinstalls it (`container_requirements`).
Training, serving, debug, the launcher and replay import this module; it imports none of them, and
nothing but the standard library at load: the serving images have no omegaconf.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from dogbreed.errors import DogBreedError
from dogbreed.requirements import declared_requirements, requirement_name

# Hydra's own command-line flags pass through untouched.
HYDRA_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--version",
    "--cfg",
    "-c",
    "--resolve",
    "--package",
    "-p",
    "--run",
    "-r",
    "--multirun",
    "-m",
    "--shell-completion",
    "-sc",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--info",
    "-i",
    "--experimental-rerun",
}


def argv_overrides(argv: list[str]) -> list[str]:
    """Replace `--name value` / `--name=value` pairs by Hydra overrides; keep Hydra's own arguments."""
    from dogbreed.hparams import RESERVED_PREFIXES, override  # omegaconf: not in every image that serves

    out: list[str] = []
    args = iter(argv)
    for arg in args:
        flag = arg.split("=", 1)[0]
        if not arg.startswith("--") or flag in HYDRA_FLAGS:
            out.append(arg)
            continue
        name = flag[2:].replace("-", "_")
        if "=" in arg:
            raw = arg.split("=", 1)[1]
        else:
            raw = next(args, None)
            if raw is None:
                raise DogBreedError(f"hyperparameter --{name} has no value")
        if not name.startswith(RESERVED_PREFIXES):
            out.append(override(name, raw))
    return out


_PACKAGE = Path(__file__).resolve().parent
# The configs travel with the code: conf/ at the top of a checkout or of a training job's source (one place
# to grep), dogbreed/conf in a wheel. conf/launch/images/ says what each SageMaker image has.
CONF_DIR = _PACKAGE.parent / "conf" if (_PACKAGE.parent / "conf").is_dir() else _PACKAGE / "conf"

OPT_ML = "/opt/ml"
MODEL_DIR = f"{OPT_ML}/model"  # where an endpoint's ModelDataUrl is unpacked, and a job's SM_MODEL_DIR
# A File-mode channel as inputdataconfig.json describes it (the local twin's and the tests' data channel).
FILE_CHANNEL = {
    "TrainingInputMode": "File",
    "S3DistributionType": "FullyReplicated",
    "RecordWrapperType": "None",
}
HANDLER = "inference.py"  # our handler module in model.tar.gz's code/ (the PyTorch image's toolkit)
SERVE_CONFIG = "config.yaml"  # at model.tar.gz's root: what the Ray Serve image runs (`serve run`)
# What the inference images need to find our handler (CreateModel's PrimaryContainer.Environment).
ENDPOINT_ENVIRONMENT = {"SAGEMAKER_PROGRAM": HANDLER, "SAGEMAKER_SUBMIT_DIRECTORY": f"{MODEL_DIR}/code"}
# And what the PyTorch inference image needs besides: TorchServe's configuration from the archive
# (dogbreed/serving/adapters/toolkit/ts.properties: the toolkit's own plus our /ping plugin), and the
# toolkit's defaults for the variables that file reads (it refuses an unset one).
TOOLKIT_ENVIRONMENT = {
    "TS_CONFIG_FILE": f"{MODEL_DIR}/code/dogbreed/serving/adapters/toolkit/ts.properties",
    "SAGEMAKER_BIND_TO_PORT": "8080",
    "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60",
}
# The toolkit's per-model TorchServe settings and its defaults for them (ts_environment.py, 2.0.25): once
# any one is in the Environment, it writes all five into a `models=` line, the unset ones at these values
# (so one worker). ts.properties' `models=` line reads all five, which the deploy therefore always sends.
TS_PER_MODEL = {
    "SAGEMAKER_TS_BATCH_SIZE": "1",
    "SAGEMAKER_TS_MAX_BATCH_DELAY": "100",
    "SAGEMAKER_TS_MIN_WORKERS": "1",
    "SAGEMAKER_TS_MAX_WORKERS": "1",
    "SAGEMAKER_TS_RESPONSE_TIMEOUT": "60",
}

# InvokeEndpoint, the front door of every real-time endpoint (botocore's sagemaker-runtime model, AWS docs):
# only these headers reach the container (no query string), bodies up to 6 MB, an answer within 60 s.
SAGEMAKER_HEADERS = tuple(
    f"x-amzn-sagemaker-{name}"
    for name in (
        "custom-attributes",
        "target-model",
        "target-variant",
        "target-container-hostname",
        "inference-id",
        "enable-explanations",
        "inference-component",
        "session-id",
    )
)
INVOKE_HEADERS = ("content-type", "accept", *SAGEMAKER_HEADERS)
INVOKE_MAX_BODY = 6_291_456  # bytes, real-time endpoints
SERVERLESS_MAX_BODY = 4 * 1024 * 1024  # bytes: "4 MB" in the serverless developer guide (one FAQ says 6)
INVOKE_MAX_CUSTOM_ATTRIBUTES = 1024  # visible ASCII characters, forwarded verbatim
INVOKE_TIMEOUT_S = 60.0  # the container must answer within this
PING_TIMEOUT_S = 2.0  # and answer /ping within this


def base_dir(environ: Mapping[str, str]) -> str:
    """SageMaker's /opt/ml, or where the training toolkit's SAGEMAKER_BASE_DIR puts it."""
    return environ.get("SAGEMAKER_BASE_DIR", OPT_ML)


def in_training_job(environ: Mapping[str, str]) -> bool:
    """True inside a SageMaker training job (or a tree laid out as one): SM_MODEL_DIR is set."""
    return "SM_MODEL_DIR" in environ


def output_data_dir(environ: Mapping[str, str], default: Path) -> Path:
    """Where a job's extra output goes (SM_OUTPUT_DATA_DIR, uploaded as output.tar.gz); else `default`."""
    return Path(environ.get("SM_OUTPUT_DATA_DIR", default))


def lay_out_opt_ml(
    root: Path,
    hyperparameters: Mapping[str, str],
    channels: Mapping[str, Mapping[str, str]],
    host: str,
    instance_type: str | None = None,
    checkpoints: str = f"{OPT_ML}/checkpoints",
) -> dict[str, str]:
    """`root` laid out as a training container's /opt/ml; returns the `SM_*` variables of that job.

    `hyperparameters` are written as given (SageMaker passes strings); `channels` maps each channel to its
    `inputdataconfig.json` entry (the caller fills `input/data/<channel>`); `host` is the one host of the job
    (`algo-1` in the service, `localhost` where nothing resolves another name).
    """
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(dict(hyperparameters)))
    (config / "inputdataconfig.json").write_text(json.dumps({k: dict(v) for k, v in channels.items()}))
    resources: dict[str, object] = {"current_host": host, "hosts": [host], "network_interface_name": "lo"}
    if instance_type:
        group = {"instance_group_name": "homogeneousCluster", "instance_type": instance_type, "hosts": [host]}
        resources |= {
            "current_instance_type": instance_type,
            "current_group_name": "homogeneousCluster",
            "instance_groups": [group],
        }
    (config / "resourceconfig.json").write_text(json.dumps(resources))
    relative_checkpoints = PurePosixPath(checkpoints).relative_to(OPT_ML).as_posix()
    for folder in ("model", "output/data", "code", "input/data", relative_checkpoints):
        (root / folder).mkdir(parents=True, exist_ok=True)
    env = {f"SM_CHANNEL_{name.upper()}": str(root / "input" / "data" / name) for name in channels}
    return env | {
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_NUM_GPUS": "0",
        "SM_HOSTS": json.dumps([host]),
        "SM_CURRENT_HOST": host,
        "SAGEMAKER_BASE_DIR": str(root),
    }


def env_overrides(environ: Mapping[str, str]) -> list[str]:
    """Paths and devices from SageMaker's `SM_*` variables (absent outside a job: no overrides)."""
    out = []
    if "SM_CHANNEL_TRAINING" in environ:
        out.append(f"data.root={environ['SM_CHANNEL_TRAINING']}")
    if "SM_MODEL_DIR" in environ:  # inside a job: SageMaker syncs /opt/ml/checkpoints with CheckpointConfig
        out += [
            f"paths.model_dir={environ['SM_MODEL_DIR']}",
            f"paths.checkpoints={base_dir(environ)}/checkpoints",
        ]
    if "SM_OUTPUT_DATA_DIR" in environ:
        out.append(f"hydra.run.dir={environ['SM_OUTPUT_DATA_DIR']}")
    gpus = int(environ.get("SM_NUM_GPUS", "0") or 0)
    world = int(environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:  # under torchrun: one process per device on each of NNODES hosts
        nodes = len(json.loads(environ.get("SM_HOSTS", "[]"))) or int(environ.get("NNODES", "1"))
        devices = int(environ.get("LOCAL_WORLD_SIZE", world // nodes))
        out += ["trainer=ddp", f"trainer.num_nodes={nodes}", f"trainer.devices={devices}"]
    elif gpus > 0:
        out += ["trainer=gpu", f"trainer.devices={gpus}"]
    return out


def hydra_argv(argv: list[str], environ: Mapping[str, str]) -> list[str]:
    """The Hydra command line for a (possibly SageMaker-style) invocation; explicit arguments win."""
    explicit = argv_overrides(argv)
    keys = {a.split("=", 1)[0].lstrip("+~") for a in explicit if "=" in a}
    from_env = [o for o in env_overrides(environ) if o.split("=", 1)[0] not in keys]
    return from_env + explicit


# What SageMaker's PyTorch training and inference images already have; never reinstalled over them.
CONTAINER_HAS = {"torch", "torchvision", "numpy", "pillow"}


def container_requirements(extra: str | None, what: str) -> str:
    """A container's `requirements.txt`: the declared requirements minus what the image already has."""
    lines = [spec for spec in declared_requirements(extra) if requirement_name(spec) not in CONTAINER_HAS]
    source = f"the `{extra}` extra" if extra else "the core dependencies"
    has = ", ".join(sorted(CONTAINER_HAS))
    header = f"# {what}: {source} of pyproject.toml, less what the PyTorch image has ({has})"
    return "\n".join([header, *lines]) + "\n"
