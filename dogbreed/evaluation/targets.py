"""What answers during an evaluation: a model loaded here, or a live endpoint, over one split's files.

    MODEL[:RUNTIME]        a run dir, model/ folder, model.tar.gz or checkpoint (RUNTIME: eager, onnx, int8)
    http://host:port       a running server with the SageMaker contract (dogbreed.serve, a replayed endpoint)
    sagemaker:NAME         a SageMaker endpoint (boto3, the AWS configuration's region unless given)

Every target returns calibrated N×classes probabilities, as served: a local model through
`Service.probabilities` (images decoded in dataloader workers, batched), an endpoint through batches of
`{"instances": [...]}` JSON asking for every class, several requests in flight.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import numpy as np
from rich.progress import track
from torch.utils.data import DataLoader, Dataset

from dogbreed.container import SERVERLESS_MAX_BODY
from dogbreed.data.datamodule import ImageList, Sample
from dogbreed.errors import DogBreedError
from dogbreed.serving.artifact import WEIGHTS
from dogbreed.serving.predict import wait_until_ready
from dogbreed.serving.service import RUNTIME_FILES, RUNTIMES, Service

log = logging.getLogger(__name__)

BATCH = 16  # images per model run or request (the local server micro-batches up to 16)
IN_FLIGHT = 4  # concurrent requests to an endpoint
MAX_REQUEST_BYTES = SERVERLESS_MAX_BODY - 2**16  # base64 images; JSON framing fits the 64 KiB left

Send = Callable[[bytes], bytes]  # a JSON request body → the answer's body


@dataclass
class Target:
    """A named source of served probabilities for a list of samples."""

    name: str
    runtime: str
    predict: Callable[[list[Sample]], np.ndarray]
    identity: dict[str, Any] = field(default_factory=dict)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split_runtime(spec: str) -> tuple[str, str | None]:
    """`MODEL:int8` → ("MODEL", "int8"); a spec without a runtime suffix → (spec, None)."""
    head, _, tail = spec.rpartition(":")
    return (head, tail) if head and tail in RUNTIMES else (spec, None)


def local_target(
    model_dir: Path, runtime: str | None, workers: int, label: str, logits: bool = False
) -> Target:
    """The model in this process, as the server runs it; images decoded by `workers` dataloader processes.
    With `logits`, it returns the logits instead (what the calibration is fitted on)."""
    try:
        service = Service(model_dir, runtime)
    except ValueError as exc:  # a runtime whose file or library is missing
        raise DogBreedError(f"{label}: {exc}") from exc

    def predict(samples: list[Sample]) -> np.ndarray:
        loader = DataLoader(ImageList(samples, service.transform), batch_size=BATCH, num_workers=workers)
        batches = track(loader, description=f"{label} ({service.runtime})", transient=True)
        rows = [(service.logits if logits else service.probabilities)(x.numpy()) for x, _ in batches]
        return np.concatenate(rows) if rows else np.zeros((0, len(service.classes)), np.float32)

    files = [model_dir / WEIGHTS]
    if service.runtime != "eager":
        files.append(model_dir / RUNTIME_FILES[service.runtime])
    identity = {f"{f.name}_sha256": sha256(f) for f in files}
    return Target(label, service.runtime, predict, identity)


class FileBytes(Dataset):
    """The files as bytes, read in dataloader workers: what a client sends."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> bytes:
        return self.samples[index][0].read_bytes()


def request_bodies(images: list[bytes], top_k: int) -> Iterator[tuple[int, bytes]]:
    """(images in it, JSON body) per request: at most `BATCH` images and `MAX_REQUEST_BYTES` each."""
    chunk: list[str] = []
    size = 0
    for image in images:
        encoded = base64.b64encode(image).decode("ascii")
        if chunk and size + len(encoded) > MAX_REQUEST_BYTES:
            yield len(chunk), json.dumps({"instances": [{"b64": b} for b in chunk], "top_k": top_k}).encode()
            chunk, size = [], 0
        chunk.append(encoded)
        size += len(encoded)
    if chunk:
        yield len(chunk), json.dumps({"instances": [{"b64": b} for b in chunk], "top_k": top_k}).encode()


def decoded(label: str, answer: bytes) -> Any:
    """The answer's JSON; an endpoint that answers something else (moto's canned "body") is one line."""
    try:
        return json.loads(answer)
    except ValueError as exc:
        raise DogBreedError(f"{label} answered {answer[:80]!r}, which is not JSON") from exc


def in_flight(pool: Executor, fn: Callable[[Any], Any], items: Iterable[Any], most: int) -> Iterator[Any]:
    """`fn` over `items` on `pool`, answers in order, at most `most` sent and not yet answered: the split
    is read as it is sent, and the first failure stops the sending (`Executor.map` would queue every
    request first, and send them all before the error surfaced)."""
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= most:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def endpoint_target(send: Send, classes: list[str], workers: int, label: str, runtime: str) -> Target:
    """An endpoint that answers `send`: full probability rows, its class labels checked against ours."""

    def rows(count: int, answer: Any) -> np.ndarray:
        if not isinstance(answer, list) or len(answer) != count:
            raise DogBreedError(f"{label} answered {type(answer).__name__}, not one list per image")
        probs = np.zeros((count, len(classes)), np.float32)
        try:
            for row, predictions in zip(probs, answer, strict=True):
                for p in predictions:
                    if not 0 <= p["index"] < len(classes) or p["label"] != classes[p["index"]]:
                        raise DogBreedError(
                            f"{label} serves other classes than the model: index {p['index']} is "
                            f"{p['label']!r}"
                        )
                    row[p["index"]] = p["probability"]
        except (KeyError, TypeError) as exc:
            raise DogBreedError(f"{label} answered {str(answer)[:80]!r}, not dogbreed's predictions") from exc
        return probs

    def run(body: tuple[int, bytes]) -> np.ndarray:
        return rows(body[0], decoded(label, send(body[1])))

    def predict(samples: list[Sample]) -> np.ndarray:
        loader = DataLoader(FileBytes(samples), batch_size=BATCH, num_workers=workers, collate_fn=list)
        bodies = (body for batch in loader for body in request_bodies(batch, len(classes)))
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            answers = track(in_flight(pool, run, bodies, IN_FLIGHT), description=label, transient=True)
            parts = list(answers)
        return np.concatenate(parts) if parts else np.zeros((0, len(classes)), np.float32)

    return Target(label, runtime, predict)


def url_send(url: str) -> Send:
    def send(body: bytes) -> bytes:
        request = Request(f"{url.rstrip('/')}/invocations", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json")
        try:
            with urlopen(request, timeout=120) as response:
                return response.read()
        except HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            with contextlib.suppress(ValueError, KeyError, TypeError):
                detail = json.loads(detail)["error"]
            raise DogBreedError(f"{url} refused the request: {exc.code} {detail}") from exc
        except (URLError, OSError) as exc:
            raise DogBreedError(f"cannot reach {url} ({getattr(exc, 'reason', exc)})") from exc

    return send


def url_runtime(url: str, wait: float) -> str:
    """The runtime a dogbreed server says it uses on /ping ("endpoint" when it does not say)."""
    wait_until_ready(url, wait)
    with contextlib.suppress(ValueError, OSError), urlopen(f"{url.rstrip('/')}/ping", timeout=5) as answer:
        return str(json.loads(answer.read()).get("runtime", "endpoint"))
    return "endpoint"


def sagemaker_send(name: str, region: str | None) -> Send:
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as exc:
        raise DogBreedError("sagemaker:NAME needs boto3: pip install 'dogbreed[sagemaker]'") from exc
    try:
        runtime = boto3.Session(region_name=region).client("sagemaker-runtime")
    except BotoCoreError as exc:  # no region configured
        raise DogBreedError(f"sagemaker:{name}: {exc} (give --region)") from exc

    def send(body: bytes) -> bytes:
        try:
            response = runtime.invoke_endpoint(
                EndpointName=name, ContentType="application/json", Accept="application/json", Body=body
            )
        except (BotoCoreError, ClientError) as exc:
            raise DogBreedError(f"endpoint {name} refused the request: {exc}") from exc
        return response["Body"].read()

    return send


def open_target(
    spec: str,
    resolve: Callable[[str], Path],
    classes: list[str],
    workers: int,
    wait: float,
    region: str | None,
) -> Target:
    """The target `spec` names (see the module docstring); `resolve` turns MODEL into a model/ folder."""
    if spec.startswith(("http://", "https://")):
        return endpoint_target(url_send(spec), classes, workers, spec, url_runtime(spec, wait))
    if spec.startswith("sagemaker:"):
        name = spec.removeprefix("sagemaker:")
        return endpoint_target(sagemaker_send(name, region), classes, workers, spec, "sagemaker")
    path, runtime = split_runtime(spec)
    return local_target(resolve(path), runtime, workers, spec)
