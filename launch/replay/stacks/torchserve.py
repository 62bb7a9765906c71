"""SageMaker's PyTorch inference image (`pytorch-inference:2.6-cpu-py312`, deploy=torchserve), replayed on
its own stack: TorchServe 0.12.0 on Java 17 and the SageMaker PyTorch inference toolkit 2.0.25.

The container starts as the image's entrypoint starts it for `serve`:
`sagemaker_pytorch_serving_container.serving.main()` writes /etc/sagemaker-ts.properties, pip-installs
/opt/ml/model/code/requirements.txt (into a per-replay overlay of the cached environment), then runs the
real `torchserve --start` with the toolkit's handler service, which loads `SAGEMAKER_PROGRAM`. The
request's Environment is the container's: with deploy=torchserve's `TS_CONFIG_FILE`, TorchServe reads the
archive's ts.properties instead of the toolkit's file, and serves /ping from our plugin, as in the image.
It runs in private mount and PID namespaces where the unpacked model *is* `/opt/ml/model`
(`launch.replay.jobs.NAMESPACE`, as on the Ray stack), /etc is an overlay (the toolkit's writes stay
there) and /proc shows only the container (the toolkit looks for *the* TorchServe among all processes).
Differences on purpose: free ports for inference/management (`SAGEMAKER_BIND_TO_PORT`), metrics and gRPC
instead of 8080-8082/7070-7071; a private `TEMP` (TorchServe's pid file and worker sockets live there) as
the working directory (the toolkit's model store is `./.sagemaker`); bash as PID 1, reaping orphans, in
place of the image's Python entrypoint; the container ends when `serving.main()` does (the image then
sleeps); and every process (java, its Python workers) in one session that `session.py` stops as a whole.

The environment has the image's Python 3.12 and its torch 2.6.0 and torchvision 0.21.0 (the package index's
CUDA build, about 5 GB: the image's is the `+cpu` build of the same version), so an eager model runs on the
torch the cloud runs it on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from subprocess import Popen

from dogbreed.container import ENDPOINT_ENVIRONMENT, MODEL_DIR
from launch.replay import ReplayError
from launch.replay.environments import StackEnvironment, isolated_environ
from launch.replay.jobs import namespace_command
from launch.replay.stacks import container, free_ports, repository, stack_python

ENVIRONMENT = StackEnvironment(
    image="pytorch-inference",
    added=(
        # the toolkit's torchserve.py imports pkg_resources; the image pins this range (Dockerfile.cpu)
        "setuptools>=80.10.1,<82.0.0",
    ),
)
REPOSITORY = "pytorch-inference"  # pytorch-inference:2.6-cpu-py312 and the other tags
JAVA = 17  # TorchServe 0.12's frontend
HANDLERS = ("model_fn", "transform_fn")  # what SAGEMAKER_PROGRAM must define for the toolkit
SERVE = "from sagemaker_pytorch_serving_container import serving; serving.main()"
# `torchserve` as pip writes it, but for the overlay's python: TorchServe starts its workers with the
# python that runs this script, and they must see what requirements.txt installed
LAUNCHER = "#!{python}\nimport sys\nfrom ts.model_server import start\nsys.exit(start())\n"

# After NAMESPACE's mounts, as PID 1 of the container's PID namespace.
ENTRYPOINT = """set -e
mkdir -p "$TEMP/etc"
mount -t tmpfs etc "$TEMP/etc"
mkdir "$TEMP/etc/upper" "$TEMP/etc/work"
mount -t overlay etc -o "lowerdir=/etc,upperdir=$TEMP/etc/upper,workdir=$TEMP/etc/work" /etc
cd "$TEMP"
python -c "$SERVE" &
wait $!
"""


def serves(image: str) -> bool:
    """Whether an image URI is the PyTorch inference image (ECR repository `pytorch-inference`, any tag)."""
    return repository(image) == REPOSITORY


def check_java() -> None:
    """Java 17 or newer where TorchServe looks (`$JAVA_HOME/bin/java`, else PATH), or one line saying what
    to install."""
    java = shutil.which(f"{os.environ['JAVA_HOME']}/bin/java" if os.environ.get("JAVA_HOME") else "java")
    found = subprocess.run([java, "-version"], capture_output=True, text=True).stderr if java else ""
    version = re.search(r'version "(\d+)', found)
    if not version or int(version.group(1)) < JAVA:
        have = f"{java} is {found.splitlines()[0]}" if found else "there is no java on PATH or in JAVA_HOME"
        raise ReplayError(
            f"the TorchServe stack needs Java {JAVA} or newer and {have}: install it "
            "(Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless; or `make java`)"
        )


def check_contract(model: Path, environ: Mapping[str, str], url: str) -> None:
    """What the toolkit needs to find our handler: `SAGEMAKER_PROGRAM` inside `SAGEMAKER_SUBMIT_DIRECTORY`,
    defining the handler functions (imported from the archive's own code, by this Python, in a child);
    and the `TS_CONFIG_FILE` that TorchServe reads, when set, inside the archive, with every $$VARIABLE$$
    it reads set and every SAGEMAKER_TS_* set read."""
    program = environ.get("SAGEMAKER_PROGRAM")
    submit = environ.get("SAGEMAKER_SUBMIT_DIRECTORY", ENDPOINT_ENVIRONMENT["SAGEMAKER_SUBMIT_DIRECTORY"])
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
    config = environ.get("TS_CONFIG_FILE")
    inside = config and config.startswith(f"{MODEL_DIR}/")
    properties = model / PurePosixPath(config).relative_to(MODEL_DIR) if inside else None
    if config and not (properties and properties.is_file()):
        raise ReplayError(
            f"PrimaryContainer.Environment.TS_CONFIG_FILE={config!r} is not in ModelDataUrl {url}: "
            "TorchServe would not start; an archive packaged before the /ping plugin lacks it: package it "
            "again (python -m dogbreed.package) or retrain"
        )
    if properties:
        lines = [
            line for line in properties.read_text(errors="replace").splitlines() if not line.startswith("#")
        ]
        read = set(re.findall(r"\$\$(\w+)\$\$", "\n".join(lines)))
        if unset := sorted(read - set(environ)):
            raise ReplayError(
                f"TS_CONFIG_FILE {config} reads {', '.join(unset)}, which PrimaryContainer.Environment does "
                "not set: TorchServe would not start; deploy again (this launcher sends them)"
            )
        if unread := sorted(k for k in environ if k.startswith("SAGEMAKER_TS_") and k not in read):
            raise ReplayError(
                f"PrimaryContainer.Environment sets {', '.join(unread)}, which TS_CONFIG_FILE {config} does "
                "not read: the archive was packaged before 2026-12-07; package it again "
                "(python -m dogbreed.package) or retrain"
            )
    module = PurePosixPath(program).stem
    probe = (
        f"import {module} as m; print(' '.join(f for f in {HANDLERS!r} if not callable(getattr(m, f, None))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=code,
        env={**isolated_environ(), "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise ReplayError(
            f"SAGEMAKER_PROGRAM {program} does not import: {result.stderr.strip().splitlines()[-1]}"
        )
    if result.stdout.split():
        raise ReplayError(
            f"SAGEMAKER_PROGRAM {program} in {url} does not define {', '.join(result.stdout.split())}"
        )


def container_environment(python: Path, temp: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """This machine's variables less anything Python, TorchServe or SageMaker reads; then the request's
    Environment; then the replay's own ports and temp folder; the overlay's python first on PATH."""
    env = isolated_environ("SM_", "SAGEMAKER_", "DOGBREED_", "TS_", "TEMP", "TMPDIR")
    bind, metrics, grpc_inference, grpc_management = free_ports(4)
    ports = {
        "SAGEMAKER_BIND_TO_PORT": str(bind),  # inference and management alike, as in the image
        "TS_METRICS_ADDRESS": f"http://127.0.0.1:{metrics}",
        "TS_GRPC_INFERENCE_PORT": str(grpc_inference),
        "TS_GRPC_MANAGEMENT_PORT": str(grpc_management),
    }
    path = f"{python.parent}:{env.get('PATH', '')}"
    return {
        **env,
        **environ,
        **ports,
        "PATH": path,
        "TEMP": str(temp),
        "TMPDIR": str(temp),
        "PYTHONUNBUFFERED": "1",
        "SERVE": SERVE,
    }


@contextmanager
def torchserve_container(
    model: Path, environ: Mapping[str, str], url: str, log: Path
) -> Iterator[tuple[Popen, str]]:
    """The PyTorch inference image's container while the block runs: (its session leader, its URL).
    `model` is `<tree>/model`, and `<tree>` becomes /opt/ml."""
    check_contract(model, environ, url)
    check_java()
    _, python = stack_python(model, ENVIRONMENT)
    launcher = python.parent / "torchserve"
    launcher.write_text(LAUNCHER.format(python=python))
    launcher.chmod(0o755)
    temp = Path(tempfile.mkdtemp(prefix="torchserve-"))
    env = {
        **container_environment(python, temp, environ),
        "TREE": str(model.parent),
        "HOSTS": "/etc/hosts",
    }
    command = namespace_command(["/bin/bash", "-c", ENTRYPOINT], pid=True)
    with container(command, env, log, temp, stop_timeout=30) as p:
        yield p, f"http://127.0.0.1:{env['SAGEMAKER_BIND_TO_PORT']}"
