"""`invoke=<endpoint> image=<photo>`: the top 5 breeds from a SageMaker endpoint, a replayed one, or a
local server (`instance=local`, `invoke=http://…` or the `local_port`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from omegaconf import DictConfig

from dogbreed.errors import DogBreedError
from launch.command import Command


def photo(cfg: DictConfig) -> Path:
    if not cfg.image:
        raise DogBreedError("invoke=<endpoint> needs image=<path to a photo>")
    image = Path(cfg.image)
    if not image.is_file():
        raise DogBreedError(f"image={image} does not exist")
    return image


def send(cfg: DictConfig, boto: boto3.Session, requests: Any, run_dir: Path) -> str:
    """InvokeEndpoint with the photo; prints the top 5."""
    from dogbreed.data.images import content_type
    from dogbreed.serving.predict import endpoint_classifier, format_predictions

    image = photo(cfg)
    classify = endpoint_classifier(cfg.invoke, boto.region_name, boto)
    predictions = classify(image.read_bytes(), content_type(image), 5)
    print(format_predictions(str(image), predictions))
    return cfg.invoke


def local(cfg: DictConfig, run_dir: Path) -> None:
    """Over HTTP to a server on this machine: `invoke=http://…`, or the replayed endpoint on `local_port`."""
    from dogbreed.data.images import content_type
    from dogbreed.serving.predict import format_predictions, url_classifier, wait_until_ready

    url = cfg.invoke if str(cfg.invoke).startswith("http") else f"http://127.0.0.1:{cfg.local_port}"
    image = photo(cfg)
    wait_until_ready(url, 30)
    print(format_predictions(str(image), url_classifier(url)(image.read_bytes(), content_type(image), 5)))


def replay(cfg: DictConfig, requests: Any, run_dir: Path) -> None:
    """The replayed endpoint answers on this machine: no AWS involved."""
    local(cfg, run_dir)


def intent(cfg: DictConfig) -> dict[str, dict[str, tuple[str, Any]]]:
    return {"InvokeEndpoint": {"EndpointName": ("invoke", cfg.invoke)}}


COMMAND = Command(
    key="invoke",
    intent=intent,
    usage="invoke=<endpoint> image=<photo>",
    send=send,
    replay=replay,
    local=local,
    replay_sends=False,
)
