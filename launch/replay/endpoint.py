"""Replay a CreateModel request: the model a SageMaker endpoint would serve, on a local port.

`PrimaryContainer.ModelDataUrl` is downloaded and unpacked as the service unpacks it into `/opt/ml/model`,
then served by the stack of the request's image (`launch.replay.stacks`), behind InvokeEndpoint's front
door:
- AWS's Ray Serve image (`deploy=default`): real `ray start` and `serve run` of the shipped `config.yaml`,
  and the image's port-8080 adapter (`stacks.ray_serve`);
- SageMaker's PyTorch inference image (`deploy=torchserve`, `deploy=serverless`): the toolkit's
  `serving.main()` and real TorchServe on Java 17 (`stacks.torchserve`).
Each runs in an environment with its image's Python and packages, with `/opt/ml/model` private. Before a
container starts, the archive's `code/requirements.txt` (which both images pip-install over what they
have) is held to the image's pins: a line they do not satisfy is one error naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dogbreed.processes import raise_on_signals
from dogbreed.serving.artifact import safe_extract_tar
from launch.images import check_pins
from launch.replay import ReplayError
from launch.replay.front_door import front_door
from launch.replay.jobs import download
from launch.replay.stacks import ray_serve, torchserve

# each image's stack: its module (which images it serves, its profile) and what to call it, its container
STACKS = (
    (ray_serve, "the Ray Serve image's stack (ray start, serve run)", ray_serve.ray_serve_container),
    (torchserve, "the PyTorch inference image's stack (TorchServe)", torchserve.torchserve_container),
)
REQUIREMENTS = "code/requirements.txt"  # what both images pip-install at start, over what they have


def unpack(url: str | None, s3: Any, work: Path) -> Path:
    """ModelDataUrl unpacked into `<work>/opt_ml/model`, the folder a container sees as /opt/ml/model."""
    if not url:
        raise ReplayError("PrimaryContainer.ModelDataUrl is missing: the endpoint would have no model")
    archive = download(s3, url, work / "download", "PrimaryContainer.ModelDataUrl")[0]
    model = work / "opt_ml" / "model"
    safe_extract_tar(archive, model)
    return model


@contextmanager
def endpoint_server(create_model: dict[str, Any], s3: Any, work: Path, port: int) -> Iterator[Any]:
    """The endpoint of this CreateModel request while the block runs: the container of its image on a port
    of its own, behind InvokeEndpoint's front door on 127.0.0.1:`port`; yields the container's process."""
    container = create_model.get("PrimaryContainer") or {}
    image = container.get("Image", "")
    found = [stack for stack in STACKS if stack[0].serves(image)]
    if not found:
        raise ReplayError(
            f"PrimaryContainer.Image {image!r} has no replayed stack: replay runs the Ray Serve image (ECR "
            f"repository {ray_serve.REPOSITORY}) and the PyTorch inference image ({torchserve.REPOSITORY})"
        )
    (module, what, start), log = found[0], work / "container.log"
    model = unpack(container.get("ModelDataUrl"), s3, work)
    if (model / REQUIREMENTS).is_file():  # a conflict is named before anything starts
        where = f"ModelDataUrl {container['ModelDataUrl']} {REQUIREMENTS}"
        check_pins((model / REQUIREMENTS).read_text(), where, module.ENVIRONMENT.image, ReplayError)
    print(f"replay: {what}; its log: {log}")
    stack = start(model, container.get("Environment", {}), container["ModelDataUrl"], log)
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
