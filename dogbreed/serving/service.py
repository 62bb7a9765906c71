"""The serving service: a loaded model and the steps that answer a request, composed once.

decode → pixels → the model (batched by the caller) → top-k → encode. Every shell is a few lines over it:
the SageMaker handlers (`inference.py`: the toolkit calls the steps one by one), the local server
(`server.py`: `Service.answer` with `MicroBatcher.submit` as its batching) and `dogbreed.predict`
(`Service.predict`). Only the eager runtime needs torch (and the weights): preprocessing is numpy and
Pillow, so an ONNX model is served where torch is not installed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dogbreed.data.classes import breed_name
from dogbreed.data.images import BadInput, decode_image
from dogbreed.data.transforms import eval_transform_from_config
from dogbreed.serving.artifact import INT8, ONNX, read_artifact, read_description

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
MAX_INSTANCES = 64
IMAGE_TYPES = {
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "application/x-image",
}
NPY_MAGIC = b"\x93NUMPY"
RUNTIMES = ("int8", "onnx", "eager")  # fastest first
RUNTIME_FILES = {"int8": INT8, "onnx": ONNX}
CUSTOM_ATTRIBUTES = "x-amzn-sagemaker-custom-attributes"
MAX_CUSTOM_ATTRIBUTES = 1024  # SageMaker's limit, in visible ASCII characters

Prediction = list[list[dict[str, Any]]]  # per image, the top-k {breed, label, index, probability, confident}
Infer = Callable[[np.ndarray], Awaitable[np.ndarray]]  # one request's pixels → its probabilities, batched


@dataclass
class Request:
    """A decoded request: RGB images, or an already preprocessed N×3×H×W float32 array."""

    images: list[Any] = field(default_factory=list)
    pixels: np.ndarray | None = None
    top_k: int | None = None


@dataclass(frozen=True)
class Answer:
    """What a shell sends back as it is: status, body, media type, and the model's time for the request."""

    status: int
    body: str
    content_type: str = "application/json"
    inference_ms: float | None = None


def _onnxruntime_missing() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return True
    return False


def runtime_for(model_dir: str | Path, wanted: str | None = None) -> str:
    """The runtime `model_dir` is served with: `wanted` (default: `DOGBREED_RUNTIME`, else "auto"), where
    "auto" is the fastest whose file is present and whose library is installed. Imports no torch."""
    wanted = wanted or os.environ.get("DOGBREED_RUNTIME", "auto")
    if wanted not in (*RUNTIMES, "auto"):
        raise ValueError(f"runtime must be auto or one of {RUNTIMES}, got {wanted!r}")
    reason = ""
    for name in RUNTIMES if wanted == "auto" else (wanted,):
        if name == "eager":
            return name
        file = Path(model_dir) / RUNTIME_FILES[name]
        if not file.is_file():
            reason = f"{file.name} is missing"
        elif _onnxruntime_missing():
            reason = "onnxruntime is not installed"
            log.warning("%s: %s unused", reason, file.name)
        else:
            return name
    raise ValueError(f"runtime {wanted!r} requested but {reason}")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _onnx_logits(path: Path, threads: int | None, spinning: bool) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    # ONNX Runtime's threads busy-wait between operators by default: the fastest batch-1 run on idle cores,
    # CPU taken from whatever shares them (a Ray replica's HTTP handling and decoding, Ray's daemons)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda pixels: session.run(None, {name: pixels})[0]


def _eager_logits(net: Any, threads: int | None) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    net = net.eval().to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run(pixels: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last)).numpy()

    return run


def parse_top_k(value: Any) -> int | None:
    if value is None:
        return None
    try:
        k = int(value)
    except (TypeError, ValueError):
        k = 0
    if k < 1:
        raise BadInput(f"top_k must be a positive integer, got {value!r}")
    return k


def _custom_attribute(attributes: str, name: str) -> str | None:
    """`name`'s value in SageMaker's CustomAttributes (`top_k=3; trace=abc`, commas or semicolons)."""
    if len(attributes) > MAX_CUSTOM_ATTRIBUTES or not attributes.isascii():
        raise BadInput(f"{CUSTOM_ATTRIBUTES} must be at most {MAX_CUSTOM_ATTRIBUTES} ASCII characters")
    for part in re.split(r"[,;]", attributes):
        key, equals, value = part.partition("=")
        if equals and key.strip().lower() == name:
            return value.strip()
    return None


def requested_top_k(headers: Mapping[str, str], query: Mapping[str, str]) -> int | None:
    """k from `?top_k=`, else `X-Top-K`, else CustomAttributes `top_k=`; None leaves it to the body's
    `"top_k"` or the default. `headers` has lower-case names."""
    raw = (
        query.get("top_k")
        or headers.get("x-top-k")
        or _custom_attribute(headers.get(CUSTOM_ATTRIBUTES, ""), "top_k")
    )
    return parse_top_k(raw)


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise BadInput("base64 image must be a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInput(f"malformed base64 image data ({exc})") from exc


def _json_images(body: bytes) -> tuple[list[bytes], int | None]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"malformed JSON ({exc})") from exc
    if not isinstance(doc, dict) or not ("image" in doc or "instances" in doc):
        raise BadInput('JSON must be {"image": "<base64>"} or {"instances": [{"b64": "<base64>"}, ...]}')
    top_k = parse_top_k(doc.get("top_k"))
    if "image" in doc:
        return [_b64(doc["image"])], top_k
    instances = doc["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadInput('"instances" must be a non-empty list of {"b64": "<base64>"}')
    if len(instances) > MAX_INSTANCES:
        raise BadInput(f"at most {MAX_INSTANCES} instances per request, got {len(instances)}", 413)
    if not all(isinstance(i, dict) and "b64" in i for i in instances):
        raise BadInput('each instance must be {"b64": "<base64>"}')
    return [_b64(i["b64"]) for i in instances], top_k


def _npy(body: bytes) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadInput(f"malformed .npy body ({exc})") from exc
    if array.ndim == 3:
        array = array[None]
    if array.dtype != np.float32 or array.ndim != 4 or array.shape[1] != 3 or not len(array):
        raise BadInput(f"npy array must be float32 N×3×H×W, got {array.dtype} {array.shape}")
    if len(array) > MAX_INSTANCES:
        raise BadInput(f"at most {MAX_INSTANCES} images per request, got {len(array)}", 413)
    return array


def decode(body: bytes | str, content_type: str | None, top_k: int | None = None) -> Request:
    """A request body as images or pixels; `top_k` (from headers or query) wins over a JSON `"top_k"`.
    `BadInput` (4xx) names anything the client must fix."""
    kind = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if isinstance(body, str):  # the SageMaker toolkit decodes JSON bodies to str
        body = body.encode("utf-8")
    if kind == "application/json":
        images, body_top_k = _json_images(body)
        return Request(images=[decode_image(b) for b in images], top_k=top_k or body_top_k)
    if kind == "application/x-npy" or (kind == "application/octet-stream" and body.startswith(NPY_MAGIC)):
        return Request(pixels=_npy(body), top_k=top_k)
    if kind in IMAGE_TYPES or kind == "application/octet-stream" or kind.startswith("image/"):
        return Request(images=[decode_image(body)], top_k=top_k)
    raise BadInput(
        f"unsupported content type {content_type!r}; send image/jpeg, image/png, application/x-image, "
        "application/octet-stream, application/json or application/x-npy",
        415,
    )


def encode(prediction: Prediction, accept: str | None) -> tuple[str, str]:
    """(body, media type) for `accept`; JSON is the only kind, anything else a 406."""
    kinds = {a.split(";")[0].strip().lower() for a in (accept or "*/*").split(",")}
    if not kinds & {"application/json", "*/*", "application/*"}:
        raise BadInput(f"cannot produce {accept!r}; responses are application/json", 406)
    return json.dumps(prediction), "application/json"


def failed(exc: Exception) -> Answer:
    """The answer to a request that raised: `BadInput` as its 4xx and message; anything else a 500 that
    names only the exception type (the traceback, with its file paths, goes to the log)."""
    if isinstance(exc, BadInput):
        return Answer(exc.status, json.dumps({"error": str(exc)}))
    log.error("internal error while answering a request", exc_info=exc)
    return Answer(500, json.dumps({"error": f"internal error: {type(exc).__name__}"}))


class Service:
    """A loaded model (preprocessing, the runtime `runtime_for` picks, class names) that answers requests.

    `threads`: the runtime's threads per model run (default: every core; a server with several replicas
    on one machine gives each its share). `spinning=False`: ONNX Runtime's threads sleep between operators
    instead of busy-waiting, leaving the cores to the server's own work."""

    def __init__(
        self,
        model_dir: str | Path,
        runtime: str | None = None,
        threads: int | None = None,
        spinning: bool = True,
    ) -> None:
        model_dir = Path(model_dir)
        self.classes, self.config = read_description(model_dir)
        self.runtime = runtime_for(model_dir, runtime)
        self.transform = eval_transform_from_config(self.config["preprocessing"])
        self.image_size = int(self.config["preprocessing"]["image_size"])
        # fitted after training (dogbreed.evaluation.calibration); a model without them serves raw softmax
        # and calls every answer confident
        calibration = self.config.get("calibration") or {}
        self.temperature = float(calibration.get("temperature", 1.0))
        self.threshold = float(calibration.get("confidence_threshold", 0.0))
        if self.runtime == "eager":  # the only runtime that needs torch and the weights
            self._logits = _eager_logits(read_artifact(model_dir)[0], threads)
        else:
            self._logits = _onnx_logits(model_dir / RUNTIME_FILES[self.runtime], threads, spinning)

    def pixels(self, request: Request) -> np.ndarray:
        """The request as a model input: images through the evaluation transform, arrays checked."""
        if request.pixels is None:
            return np.stack([self.transform(image) for image in request.images])
        expected = (3, self.image_size, self.image_size)
        if request.pixels.shape[1:] != expected:
            raise BadInput(f"npy array must be N×{'×'.join(map(str, expected))}, got {request.pixels.shape}")
        return request.pixels

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """N×classes logits, uncalibrated: what the temperature is fitted on."""
        return self._logits(np.ascontiguousarray(pixels, dtype=np.float32))

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """N×classes calibrated probabilities (logits / temperature): the one place where logits become
        probabilities, so every runtime and shell serves the same calibrated numbers."""
        return softmax(self.logits(pixels) / self.temperature)

    def infer_batch(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Several requests' pixels in one model run, each request's probabilities back: the function that
        `MicroBatcher` (or Ray Serve's `@serve.batch`) calls with what it collected."""
        probabilities = self.probabilities(np.concatenate(batch))
        return np.split(probabilities, np.cumsum([len(pixels) for pixels in batch[:-1]]))

    def warm_up(self) -> None:
        """One prediction, so that the first request does not pay for lazy initialisation."""
        self.probabilities(np.zeros((1, 3, self.image_size, self.image_size), np.float32))

    def top_k(self, probabilities: np.ndarray, k: int | None) -> Prediction:
        k = min(k or DEFAULT_TOP_K, len(self.classes))
        results = []
        for row in probabilities:
            best = np.argsort(-row, kind="stable")[:k]
            results.append(
                [
                    {
                        "breed": breed_name(self.classes[i]),
                        "label": self.classes[i],
                        "index": int(i),
                        "probability": float(row[i]),
                        "confident": bool(row[i] >= self.threshold),
                    }
                    for i in best
                ]
            )
        return results

    def _steps(self, request: Request) -> Generator[Any, np.ndarray, None]:
        """pixels → (the caller runs the model, batched or not) → top-k: the composition, once. It yields
        the pixels, is sent their probabilities and yields the prediction, so sync and async callers drive
        the same steps."""
        probabilities = yield self.pixels(request)
        yield self.top_k(probabilities, request.top_k)

    def predict(self, request: Request) -> Prediction:
        """Top-k breeds per image of a decoded request, the model run here and now (no batching)."""
        steps = self._steps(request)
        return steps.send(self.probabilities(next(steps)))

    def _prepare(
        self, body: bytes | str, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> tuple[Generator[Any, np.ndarray, None], np.ndarray, str | None]:
        """A whole request up to the model: (its remaining steps, its pixels, its Accept)."""
        headers = {name.lower(): value for name, value in headers.items()}
        request = decode(body, headers.get("content-type"), requested_top_k(headers, query))
        steps = self._steps(request)
        return steps, next(steps), headers.get("accept")

    @staticmethod
    def _finish(
        steps: Generator[Any, np.ndarray, None], probabilities: np.ndarray, accept: str | None, ms: float
    ) -> Answer:
        payload, content_type = encode(steps.send(probabilities), accept)
        return Answer(200, payload, content_type, ms)

    def respond(
        self, body: bytes | str, headers: Mapping[str, str], query: Mapping[str, str] | None = None
    ) -> Answer:
        """A whole request for a sync shell (the toolkit's `transform_fn`), the model run here and now.
        Never raises: a failure is its error `Answer`."""
        try:
            steps, pixels, accept = self._prepare(body, headers, query or {})
            started = time.perf_counter()
            probabilities = self.probabilities(pixels)
            return self._finish(steps, probabilities, accept, (time.perf_counter() - started) * 1000)
        except Exception as exc:
            return failed(exc)

    async def answer(
        self, body: bytes, headers: Mapping[str, str], query: Mapping[str, str], *, infer: Infer
    ) -> Answer:
        """A whole HTTP request: decode → pixels → `infer` (the shell's batching) → top-k → encode, in
        worker threads where it is CPU work. Never raises: a failure is its error `Answer`."""
        try:
            steps, pixels, accept = await asyncio.to_thread(self._prepare, body, headers, query)
            started = time.perf_counter()
            probabilities = await infer(pixels)
            return self._finish(steps, probabilities, accept, (time.perf_counter() - started) * 1000)
        except Exception as exc:
            return failed(exc)


def images(batch: list[np.ndarray]) -> int:
    """A batch's size in images, not requests (a request may carry several): what bounds one model run."""
    return sum(len(pixels) for pixels in batch)


async def in_parts(infer: Infer, pixels: np.ndarray, most: int) -> np.ndarray:
    """`infer` over one request's pixels in parts of at most `most` images, answered whole: a batcher
    bounded in images cannot take a request larger than its batch. A request that fits goes as it is."""
    if len(pixels) <= most:
        return await infer(pixels)
    parts = [infer(pixels[start : start + most]) for start in range(0, len(pixels), most)]
    return np.concatenate(await asyncio.gather(*parts))


class MicroBatcher:
    """Runs `infer_batch` on everything queued since its last run, up to `max_batch_size` images, so
    concurrent requests share a batch; `submit` is the `infer` a shell passes to `Service.answer`. A run
    never holds more than `max_batch_size` images (memory grows with it, and a request may carry 64): a
    request that would overflow the batch starts the next one, and a larger request runs in parts, as
    the Ray adapter's batches do."""

    def __init__(
        self,
        infer_batch: Callable[[list[np.ndarray]], list[np.ndarray]],
        max_batch_size: int = 16,
        max_wait_ms: float = 0.0,
    ) -> None:
        self.infer_batch, self.max_batch_size, self.max_wait = infer_batch, max_batch_size, max_wait_ms / 1000
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.batch_sizes: list[int] = []
        self.carried: tuple[np.ndarray, asyncio.Future] | None = None  # the next batch's first

    async def submit(self, pixels: np.ndarray) -> np.ndarray:
        """One request's probabilities, in parts of at most a batch when it is larger than one."""
        return await in_parts(self._queued, pixels, self.max_batch_size)

    async def _queued(self, pixels: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((pixels, future))
        return await future

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        first, self.carried = self.carried, None
        items = [first or await self.queue.get()]
        size = len(items[0][0])
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch_size:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            if size + len(item[0]) > self.max_batch_size:
                self.carried = item
                break
            items.append(item)
            size += len(item[0])
        return items

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            batch = [pixels for pixels, _ in items]
            self.batch_sizes.append(images(batch))
            try:
                results = await loop.run_in_executor(self.executor, self.infer_batch, batch)
            except Exception as exc:
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), probabilities in zip(items, results, strict=True):
                if not future.done():
                    future.set_result(probabilities)
