"""SageMaker inference handler: `model_fn`, `input_fn`, `predict_fn`, `output_fn`.

Shipped in `model.tar.gz` as `code/inference.py` (which re-exports these) and used unchanged by the local
server. Needs torch, torchvision, Pillow and numpy — what the SageMaker PyTorch inference container has —
and uses ONNX Runtime when it is importable and an exported model is present.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dogbreed.data.classes import breed_name
from dogbreed.data.images import BadInput, decode_image
from dogbreed.data.transforms import eval_transform_from_config
from dogbreed.serving.artifact import INT8, ONNX, read_artifact

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


@dataclass
class Request:
    """A decoded request: RGB images, or an already preprocessed N×3×H×W float32 array."""

    images: list[Any] = field(default_factory=list)
    pixels: np.ndarray | None = None
    top_k: int | None = None


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _onnx_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda pixels: _softmax(session.run(None, {name: pixels})[0])


def _eager_runner(net: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    net = net.eval().to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run(pixels: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last)
        return net(x).softmax(dim=1).numpy()

    return run


class Predictor:
    """A loaded model: preprocessing, the fastest runtime present, and class names."""

    def __init__(self, model_dir: str | Path, runtime: str = "auto") -> None:
        model_dir = Path(model_dir)
        net, self.classes, self.config = read_artifact(model_dir)
        self.transform = eval_transform_from_config(self.config["preprocessing"])
        self.image_size = int(self.config["preprocessing"]["image_size"])
        files = {"int8": model_dir / INT8, "onnx": model_dir / ONNX}
        wanted = RUNTIMES if runtime == "auto" else (runtime,)
        if runtime not in (*RUNTIMES, "auto"):
            raise ValueError(f"runtime must be auto or one of {RUNTIMES}, got {runtime!r}")
        for name in wanted:
            if name == "eager":
                self.runtime, self._run = name, _eager_runner(net)
                break
            if files[name].is_file():
                try:
                    self.runtime, self._run = name, _onnx_runner(files[name])
                    break
                except ImportError:
                    log.warning("onnxruntime is not installed: %s unused", files[name].name)
        else:
            raise ValueError(f"runtime {runtime!r} requested but {files[runtime].name} is missing")

    def pixels(self, request: Request) -> np.ndarray:
        """The request as a model input: images through the evaluation transform, arrays checked."""
        if request.pixels is None:
            return np.stack([self.transform(image).numpy() for image in request.images])
        expected = (3, self.image_size, self.image_size)
        if request.pixels.shape[1:] != expected:
            raise BadInput(f"npy array must be N×{'×'.join(map(str, expected))}, got {request.pixels.shape}")
        return request.pixels

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return self._run(np.ascontiguousarray(pixels, dtype=np.float32))

    def top_k(self, probabilities: np.ndarray, k: int | None) -> list[list[dict[str, Any]]]:
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
                    }
                    for i in best
                ]
            )
        return results


def _toolkit_bad_input() -> type[BadInput] | None:
    """BadInput that the SageMaker inference toolkit also recognises (so it answers 4xx, not 500)."""
    try:
        from sagemaker_inference.errors import BaseInferenceToolkitError
    except ImportError:
        return None

    class ToolkitBadInput(BadInput, BaseInferenceToolkitError):
        def __init__(self, message: str, status: int = 400) -> None:
            Exception.__init__(self, message)  # neither parent's __init__ fits both
            self.status, self.status_code, self.phrase = status, status, HTTPStatus(status).phrase
            self.message = json.dumps({"error": message})

    return ToolkitBadInput


TOOLKIT_BAD_INPUT = _toolkit_bad_input()


def _toolkit_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except BadInput as exc:
            if TOOLKIT_BAD_INPUT is None or isinstance(exc, TOOLKIT_BAD_INPUT):
                raise
            raise TOOLKIT_BAD_INPUT(str(exc), exc.status) from exc

    return wrapper


def model_fn(model_dir: str) -> Predictor:
    """The serving entry point (SageMaker's and ours): says once which runtime it chose."""
    predictor = Predictor(model_dir, os.environ.get("DOGBREED_RUNTIME", "auto"))
    log.info("model %s: %d classes, runtime %s", model_dir, len(predictor.classes), predictor.runtime)
    return predictor


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


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise BadInput("base64 image must be a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInput(f"malformed base64 image data ({exc})") from exc


def _json_images(body: bytes | str) -> tuple[list[bytes], int | None]:
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


@_toolkit_errors
def input_fn(body: bytes | str, content_type: str | None) -> Request:
    """Decode a request body; `BadInput` (4xx) names anything the client must fix."""
    kind = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if isinstance(body, str):  # the SageMaker toolkit decodes JSON bodies to str
        body = body.encode("utf-8")
    if kind == "application/json":
        images, top_k = _json_images(body)
        return Request(images=[decode_image(b) for b in images], top_k=top_k)
    if kind == "application/x-npy" or (kind == "application/octet-stream" and body.startswith(NPY_MAGIC)):
        return Request(pixels=_npy(body))
    if kind in IMAGE_TYPES or kind == "application/octet-stream" or kind.startswith("image/"):
        return Request(images=[decode_image(body)])
    raise BadInput(
        f"unsupported content type {content_type!r}; send image/jpeg, image/png, application/x-image, "
        "application/octet-stream, application/json or application/x-npy",
        415,
    )


@_toolkit_errors
def predict_fn(request: Request, model: Predictor) -> list[list[dict[str, Any]]]:
    """Top-k breeds per image, highest first."""
    return model.top_k(model.probabilities(model.pixels(request)), request.top_k)


@_toolkit_errors
def output_fn(prediction: list[list[dict[str, Any]]], accept: str | None) -> tuple[str, str]:
    kinds = {a.split(";")[0].strip().lower() for a in (accept or "*/*").split(",")}
    if not kinds & {"application/json", "*/*", "application/*"}:
        raise BadInput(f"cannot produce {accept!r}; responses are application/json", 406)
    return json.dumps(prediction), "application/json"
