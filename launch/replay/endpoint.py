"""Replay a CreateModel request: the model a SageMaker endpoint would serve, on a local port.

`PrimaryContainer.ModelDataUrl` is downloaded and unpacked as the service unpacks it into `/opt/ml/model`;
its `Environment` contract (`SAGEMAKER_PROGRAM` inside `SAGEMAKER_SUBMIT_DIRECTORY`) is checked — the file
exists and defines the handler functions — and the model is served on that contract by our server, running
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
from dogbreed.processes import child
from dogbreed.serving.artifact import safe_extract_tar
from launch.replay import ReplayError
from launch.replay.jobs import check_requirements, download

HANDLERS = ("model_fn", "input_fn", "predict_fn", "output_fn")


def unpack(create_model: dict[str, Any], s3: Any, work: Path) -> tuple[Path, Path]:
    """(the unpacked model folder, its submit directory), checked against the request's contract."""
    container = create_model.get("PrimaryContainer") or {}
    url = container.get("ModelDataUrl")
    if not url:
        raise ReplayError("PrimaryContainer.ModelDataUrl is missing: the endpoint would have no model")
    archive = download(s3, url, work / "download", "PrimaryContainer.ModelDataUrl")[0]
    model = work / "opt_ml_model"
    safe_extract_tar(archive, model)
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
    return model, code


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
def endpoint_server(create_model: dict[str, Any], s3: Any, work: Path, port: int) -> Iterator[Any]:
    """The endpoint of this CreateModel request, served on 127.0.0.1:`port` while the block runs."""
    model, code = unpack(create_model, s3, work)
    command = [
        sys.executable,
        "-m",
        "dogbreed.serve",
        str(model),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    print(f"replay: endpoint model {create_model['ModelName']} on http://127.0.0.1:{port} (library: {code})")
    with child(command, cwd=code.parent, env=shipped_environment(code)) as process:
        yield process


def replay_endpoint(create_model: dict[str, Any], s3: Any, work: Path, port: int) -> int:
    """Serve until the server ends (Ctrl-C or SIGTERM stop it too)."""
    with endpoint_server(create_model, s3, work, port) as process:
        try:
            return process.wait()
        except KeyboardInterrupt:
            return 130
