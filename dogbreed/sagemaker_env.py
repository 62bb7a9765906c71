"""The SageMaker training-container contract → Hydra overrides.

Inside a job the entry point is called like `train --lr 0.001 --batch-size "64"` (tuning jobs JSON-quote
values) with `SM_*` variables naming the data channel and output folders. One explicit table maps each
hyperparameter to its Hydra key; an unknown name is an error, never silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from dogbreed.errors import DogBreedError

# Hyperparameter name (as SageMaker sends it) → Hydra override key.
HYPERPARAMETERS: dict[str, str] = {
    "experiment": "+experiment",
    "lr": "model.lr",
    "eps": "model.eps",
    "weight_decay": "model.weight_decay",
    "label_smoothing": "model.label_smoothing",
    "scheduler": "model.scheduler",
    "pretrained": "model.pretrained",
    "freeze_backbone": "model.freeze_backbone",
    "batch_size": "data.batch_size",
    "image_size": "data.image_size",
    "num_workers": "data.num_workers",
    "epochs": "trainer.max_epochs",
    "seed": "seed",
    "debug": "debug",
}
# Set by SageMaker itself, not by the user: accepted and ignored.
RESERVED_PREFIXES = ("sagemaker_", "_tuning_objective_metric")
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


def hydra_value(raw: str) -> str:
    """`"64"` → `64`, `0.001` → `0.001`, `true` → `true`: undo JSON quoting, keep Hydra's literal syntax."""
    value: object = raw
    while isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if decoded == value:
            return value
        value = decoded
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def argv_overrides(argv: list[str]) -> list[str]:
    """Replace `--name value` / `--name=value` pairs by Hydra overrides; keep Hydra's own arguments."""
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
        if name.startswith(RESERVED_PREFIXES):
            continue
        if name not in HYPERPARAMETERS:
            known = ", ".join(sorted(HYPERPARAMETERS))
            raise DogBreedError(f"unknown hyperparameter {name!r}; known: {known}")
        out.append(f"{HYPERPARAMETERS[name]}={hydra_value(raw)}")
    return out


def base_dir(environ: Mapping[str, str]) -> str:
    """SageMaker's /opt/ml, or where the training toolkit's SAGEMAKER_BASE_DIR puts it."""
    return environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")


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
