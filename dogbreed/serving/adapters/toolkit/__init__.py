"""The adapter for SageMaker's PyTorch inference image: TorchServe and the SageMaker inference toolkit.

model.tar.gz's `code/inference.py` (the image's `SAGEMAKER_PROGRAM`) exports `model_fn` and `transform_fn`
from here. The toolkit calls `transform_fn(model, body, content_type, accept, context)` per request and
passes TorchServe's `context` to a handler that takes one parameter more than it is given; `transform_fn`
answers every request itself through `Service.respond` and sets a non-200 status on that context. It never
raises: the toolkit's `Transformer.handle_error` appends the whole traceback to any error body, by design and
with no switch (sagemaker-inference-toolkit PR #51), so a client error would come back as our JSON followed
by file paths. For the failures the toolkit meets before calling us (it decodes an `application/json` or
`text/csv` body as UTF-8 first), `handle_error` itself is replaced when this module is imported, by one that
answers `{"error": …}` and logs the trace. Batching stays off (TorchServe's batch size 1, the default): the
toolkit calls `transform_fn` once per request of a batch, in turn (no model run is shared), with the first
request's headers for all.

Health: `model_fn` returns only after the model has answered a warm-up prediction, and `Ping.java`
(`plugins/dogbreed-ping.jar`, loaded through `ts.properties`, which the deploy names in `TS_CONFIG_FILE`)
replaces TorchServe's /ping, which is 200 before any worker has loaded the model, by one that is 503
until a worker has: as on `dogbreed.serve` and the Ray Serve image, /ping turns healthy only once the
model has answered.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from http import HTTPStatus
from typing import Any

from dogbreed.serving.replicas import worker_threads
from dogbreed.serving.service import Service

log = logging.getLogger(__name__)


def model_fn(model_dir: str) -> Service:
    """The loaded and warmed-up model (`DOGBREED_RUNTIME` forces a runtime) on this worker's share of the
    cores; says once which runtime, how many threads, and on which Python and torch (the image's)."""
    threads = worker_threads(os.environ)
    service = Service(model_dir, threads=threads)
    service.warm_up()  # the worker counts as loaded (Ping.java: /ping 200) only once this returns
    torch = sys.modules.get("torch")  # the toolkit imports it before calling us
    log.info(
        "model %s: %d classes, runtime %s, %d thread(s), Python %s, torch %s",
        model_dir,
        len(service.classes),
        service.runtime,
        threads,
        platform.python_version(),
        getattr(torch, "__version__", "not loaded"),
    )
    return service


def request_headers(context: Any) -> dict[str, str]:
    """The request's headers (CustomAttributes carries top_k) from TorchServe's context; none without one."""
    if context is None:
        return {}
    try:
        headers = context.get_all_request_header(0)
    except (AttributeError, IndexError, KeyError, TypeError):
        return {}
    return {str(k).lower(): v for k, v in (headers or {}).items() if isinstance(v, str)}


def transform_fn(
    model: Service,
    body: bytes | str | None,
    content_type: str | None,
    accept: str | None,
    context: Any = None,
) -> tuple[str, str]:
    """One request, answered whole: (body, media type), and the status on the context when it is not 200."""
    headers = {**request_headers(context), "content-type": content_type or "", "accept": accept or ""}
    answer = model.respond(b"" if body is None else body, headers)
    if answer.status != 200 and context is not None:
        context.set_response_status(code=answer.status, phrase=HTTPStatus(answer.status).phrase)
    return answer.body, answer.content_type


def handle_error(context: Any, inference_exception: Any, trace: str) -> list[str]:
    """The toolkit's error answer for what fails before `transform_fn` runs: our JSON, the trace logged."""
    if isinstance(sys.exc_info()[1], UnicodeDecodeError):  # called inside the toolkit's `except`
        status, message = 400, "body is not UTF-8 text, as its content type says (send images as image/*)"
    else:
        status = getattr(inference_exception, "status_code", 500) or 500
        message = "internal error" if status >= 500 else "bad request"
    log.error("inference toolkit error, answered %d: %s", status, trace)
    context.set_response_status(code=status, phrase=HTTPStatus(status).phrase)
    context.set_response_content_type(0, "application/json")
    return [json.dumps({"error": message})]


try:
    from sagemaker_inference.transformer import Transformer
except ImportError:  # not inside the image: nothing to replace
    pass
else:
    Transformer.handle_error = staticmethod(handle_error)
