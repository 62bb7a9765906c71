"""SageMaker inference handler: `model_fn`, `input_fn`, `predict_fn`, `output_fn`.

Shipped in `model.tar.gz` as `code/inference.py` (which re-exports these). The toolkit calls them one by one,
so each is one step of `dogbreed.serving.service`, which composes them (and which the local server uses
whole). Needs what the SageMaker PyTorch inference container has (torch, torchvision, Pillow, numpy) and uses
ONNX Runtime when it is importable and an exported model is present.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from dogbreed.data.images import BadInput
from dogbreed.serving.service import Prediction, Request, Service, decode, encode

log = logging.getLogger(__name__)


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


def model_fn(model_dir: str) -> Service:
    """The loaded model (`DOGBREED_RUNTIME` forces a runtime); says once which runtime it chose."""
    service = Service(model_dir)
    log.info("model %s: %d classes, runtime %s", model_dir, len(service.classes), service.runtime)
    return service


@_toolkit_errors
def input_fn(body: bytes | str, content_type: str | None) -> Request:
    """Decode a request body; `BadInput` (4xx) names anything the client must fix."""
    return decode(body, content_type)


@_toolkit_errors
def predict_fn(request: Request, model: Service) -> Prediction:
    """Top-k breeds per image, highest first."""
    return model.predict(request)


@_toolkit_errors
def output_fn(prediction: Prediction, accept: str | None) -> tuple[str, str]:
    return encode(prediction, accept)
