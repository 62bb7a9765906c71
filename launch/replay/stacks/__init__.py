"""The images' own stacks, replayed: one module per SageMaker image, each starting the image's real server
software from an environment with that image's Python and packages (`launch.replay.environments`).

- `ray_serve`: AWS's Ray Serve image (`deploy=default`): `ray start`, `serve run /opt/ml/model/config.yaml`,
  and the image's port-8080 adapter (`ray_adapter`, restated).
- `torchserve`: SageMaker's PyTorch inference image (`deploy=torchserve`, serverless): the toolkit's
  `serving.main()` and real TorchServe on Java 17, on the image's torch 2.6.0.
- `training`: SageMaker's PyTorch training image's environment (`pytorch-amzn2023`).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import STDOUT, Popen

from dogbreed.container import MODEL_DIR
from dogbreed.processes import child
from launch.replay.environments import StackEnvironment, environment, overlay
from launch.replay.stacks.session import session_processes, stop_session


def free_ports(count: int) -> list[int]:
    """`count` ports nobody listens on now, for a stack's own servers: held open together while chosen, so
    no two are the same (one at a time, the kernel may hand out a port twice; a small race with other
    programs remains)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def free_port() -> int:
    return free_ports(1)[0]


def repository(image: str) -> str:
    """An image URI's ECR repository, without registry or tag: what says which stack serves it."""
    return image.rsplit("/", 1)[-1].split(":", 1)[0]


def stack_python(model: Path, spec: StackEnvironment) -> tuple[Path, Path]:
    """(`spec`'s cached environment, the python of a fresh overlay of it beside `model`'s tree) for one
    replay, so that what requirements.txt installs never changes the cache. `model` is `<tree>/model`,
    and `<tree>` becomes /opt/ml."""
    if model.name != Path(MODEL_DIR).name:
        raise ValueError(f"{model} must be named model: its parent is mounted as /opt/ml")
    base = environment(spec)
    folder = model.parent.parent / "stack-env"
    shutil.rmtree(folder, ignore_errors=True)  # a previous replay's, in the same tree
    return base, overlay(base, folder)


@contextmanager
def container(
    command: list[str], env: dict[str, str], log: Path, temp: Path, stop_timeout: float
) -> Iterator[Popen]:
    """`command` (a stack's namespace command) running under `session.py` while the block runs, its output
    appended to `log`; after it, no process of its session is left (even where the leader died first) and
    the container's `temp` folder is gone."""
    session = None
    try:
        with (
            log.open("ab") as out,
            child(
                [sys.executable, str(Path(__file__).with_name("session.py")), *command],
                stop_timeout=stop_timeout,
                env=env,
                stdout=out,
                stderr=STDOUT,
                start_new_session=True,
            ) as p,
        ):
            session = p.pid
            yield p
    finally:
        if session is not None and session_processes(session):  # its leader died before stopping them
            stop_session(session)
        shutil.rmtree(temp, ignore_errors=True)
