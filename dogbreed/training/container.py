"""The SageMaker container contract: arguments and `SM_*` variables → Hydra overrides; requirements.

Inside a job the entry point is called like `train --lr 0.001 --batch-size "64"` (tuning jobs JSON-quote
values) with `SM_*` variables naming the data channel and output folders. The table of `dogbreed.hparams`
maps each hyperparameter to its Hydra key; an unknown name is an error, never silently dropped.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from dogbreed.errors import DogBreedError
from dogbreed.hparams import RESERVED_PREFIXES, override

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


# What SageMaker's PyTorch training and inference images already have; never reinstalled over them.
CONTAINER_HAS = {"torch", "torchvision", "numpy", "pillow"}
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def declared_requirements(extra: str | None = None) -> list[str]:
    """`pyproject.toml`'s core dependencies (or one extra's): from the source tree when it is there (a
    checkout, or the source a training job runs), else from the installed package's metadata."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text())["project"]
        return list(project["optional-dependencies"][extra] if extra else project["dependencies"])
    out = []
    for line in metadata.requires("dogbreed") or []:
        spec, _, marker = line.partition(";")
        wanted = _EXTRA.search(marker)
        if (wanted.group(1) if wanted else None) == extra:
            out.append(spec.strip())
    return out


def requirement_name(spec: str) -> str:
    return re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def container_requirements(extra: str | None, what: str) -> str:
    """A container's `requirements.txt`: the declared requirements minus what the image already has."""
    lines = [spec for spec in declared_requirements(extra) if requirement_name(spec) not in CONTAINER_HAS]
    source = f"the `{extra}` extra" if extra else "the core dependencies"
    has = ", ".join(sorted(CONTAINER_HAS))
    header = f"# {what}: {source} of pyproject.toml, less what the PyTorch image has ({has})"
    return "\n".join([header, *lines]) + "\n"
