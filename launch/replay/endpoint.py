"""Replay a CreateModel request: the model a SageMaker endpoint would serve, on a local port.

`PrimaryContainer.ModelDataUrl` is downloaded and unpacked as the service unpacks it into `/opt/ml/model`,
then served by the stack of the request's image, behind InvokeEndpoint's front door:
- AWS's Ray Serve image (`deploy=default`): that image's own stack (`launch.replay.stacks.ray_serve`: real
  `ray start` and `serve run` of the shipped `config.yaml` in an environment with the image's Python and
  packages, its port-8080 adapter, `/opt/ml/model` private);
- any other image (the PyTorch inference image, `deploy=torchserve`, until its own stack is replayed): the
  `Environment` contract (`SAGEMAKER_PROGRAM` inside `SAGEMAKER_SUBMIT_DIRECTORY`) is checked — the file
  exists and defines the handler functions — and our server serves the model on that contract, running
  the library shipped inside the archive (`code/dogbreed`), not the one installed here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from dogbreed.container import ENDPOINT_ENVIRONMENT, MODEL_DIR
from dogbreed.processes import child, raise_on_signals
from dogbreed.serving.artifact import safe_extract_tar
from launch.replay import ReplayError
from launch.replay.front_door import front_door
from launch.replay.jobs import check_requirements, download
from launch.replay.stacks import free_port
from launch.replay.stacks.ray_serve import ray_serve_container, serves

HANDLERS = ("model_fn", "transform_fn")  # what code/inference.py must define for the toolkit


def unpack(url: str | None, s3: Any, work: Path) -> Path:
    """ModelDataUrl unpacked into `<work>/opt_ml/model`, the folder a container sees as /opt/ml/model."""
    if not url:
        raise ReplayError("PrimaryContainer.ModelDataUrl is missing: the endpoint would have no model")
    archive = download(s3, url, work / "download", "PrimaryContainer.ModelDataUrl")[0]
    model = work / "opt_ml" / "model"
    safe_extract_tar(archive, model)
    return model


def check_toolkit_contract(container: dict[str, Any], model: Path) -> Path:
    """The submit directory of the inference toolkit's contract, checked against the request."""
    url = container["ModelDataUrl"]
    env = container.get("Environment", {})
    program = env.get("SAGEMAKER_PROGRAM")
    submit = env.get("SAGEMAKER_SUBMIT_DIRECTORY", ENDPOINT_ENVIRONMENT["SAGEMAKER_SUBMIT_DIRECTORY"])
    if not program:
        raise ReplayError(
            "PrimaryContainer.Environment has no SAGEMAKER_PROGRAM: the image would not find a handler"
        )
    if not submit.startswith(MODEL_DIR):
        raise ReplayError(
            f"PrimaryContainer.Environment.SAGEMAKER_SUBMIT_DIRECTORY={submit!r} is outside {MODEL_DIR}, "
            "where ModelDataUrl is unpacked"
        )
    code = model / PurePosixPath(submit).relative_to(MODEL_DIR)
    if not (code / program).is_file():
        have = ", ".join(sorted(p.name for p in code.iterdir())) if code.is_dir() else "no such folder"
        raise ReplayError(
            f"PrimaryContainer.Environment.SAGEMAKER_PROGRAM={program!r} is not in "
            f"SAGEMAKER_SUBMIT_DIRECTORY {submit} of ModelDataUrl {url} ({have})"
        )
    if (code / "requirements.txt").is_file():
        check_requirements(code / "requirements.txt", f"{submit}/requirements.txt")
    missing = shipped_handlers(code, program)
    if missing:
        raise ReplayError(f"SAGEMAKER_PROGRAM {program} in {url} does not define {', '.join(missing)}")
    return code


def shipped_environment(code: Path) -> dict[str, str]:
    """Imports resolve to the archive's `code/` first, as in the inference image."""
    return {**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1"}


def shipped_handlers(code: Path, program: str) -> list[str]:
    """The handler functions the program lacks, imported from the archive's own code in a child process."""
    module = PurePosixPath(program).stem
    probe = (
        f"import {module} as m; print(' '.join(f for f in {HANDLERS!r} if not callable(getattr(m, f, None))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=code.parent,
        env=shipped_environment(code),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise ReplayError(
            f"SAGEMAKER_PROGRAM {program} does not import: {result.stderr.strip().splitlines()[-1]}"
        )
    return result.stdout.split()


@contextmanager
def dogbreed_serve_container(container: dict[str, Any], model: Path) -> Iterator[tuple[Any, str]]:
    """Our server on the toolkit's contract, on a port of its own: (its process, its URL)."""
    code = check_toolkit_contract(container, model)
    inner = free_port()
    command = [
        sys.executable,
        "-m",
        "dogbreed.serve",
        str(model),
        "--port",
        str(inner),
        "--log-level",
        "warning",
    ]
    env = {**shipped_environment(code), **container.get("Environment", {})}
    print(f"replay: the model's library: {code}")
    with child(command, cwd=code.parent, env=env) as process:
        yield process, f"http://127.0.0.1:{inner}"


@contextmanager
def endpoint_server(create_model: dict[str, Any], s3: Any, work: Path, port: int) -> Iterator[Any]:
    """The endpoint of this CreateModel request while the block runs: the container of its image on a port
    of its own, behind InvokeEndpoint's front door on 127.0.0.1:`port`; yields the container's process."""
    container = create_model.get("PrimaryContainer") or {}
    model = unpack(container.get("ModelDataUrl"), s3, work)
    if serves(container.get("Image", "")):
        log = work / "container.log"
        print(f"replay: the Ray Serve image's stack (ray start, serve run); its log: {log}")
        stack = ray_serve_container(model, container.get("Environment", {}), container["ModelDataUrl"], log)
    else:
        stack = dogbreed_serve_container(container, model)
    with stack as (process, url), front_door(port, url):
        print(f"replay: endpoint model {create_model['ModelName']} on http://127.0.0.1:{port}")
        yield process


def replay_endpoint(create_model: dict[str, Any], s3: Any, work: Path, port: int) -> int:
    """Serve until the server ends (Ctrl-C or SIGTERM stop it too, and everything it started)."""
    raise_on_signals()
    with endpoint_server(create_model, s3, work, port) as process:
        try:
            return process.wait()
        except KeyboardInterrupt:
            return 130
