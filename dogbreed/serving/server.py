"""A local endpoint with SageMaker's container contract, micro-batching, and a demo page.

    python -m dogbreed.serve MODEL [--host 127.0.0.1] [--port 8080] [--max-batch-size 16] [--max-wait-ms 0]

MODEL is a `model/` folder, a `model.tar.gz` or a Lightning checkpoint. `GET /ping` answers 200 once the
model is loaded and has answered a warm-up prediction (503 before); `POST /invocations` takes what
`dogbreed.serving.inference.input_fn` takes; `GET /` is a page to drop a photo on. Requests that arrive
while the model is busy are batched together (up to `--max-batch-size`; `--max-wait-ms` waits for more).
Needs the `serve` extra (Starlette, uvicorn; ONNX Runtime for exported models).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from dogbreed.data.images import BadInput
from dogbreed.errors import DogBreedError, report_user_error
from dogbreed.serving import inference
from dogbreed.serving.artifact import model_card, resolve_model

log = logging.getLogger("dogbreed.serve")
MAX_BODY = 10 * 1024 * 1024


class MicroBatcher:
    """Runs the model on everything queued since the last run, so concurrent requests share a batch."""

    def __init__(self, run: Any, max_batch_size: int = 16, max_wait_ms: float = 0.0) -> None:
        self.run, self.max_batch_size, self.max_wait = run, max_batch_size, max_wait_ms / 1000
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.batch_sizes: list[int] = []

    async def submit(self, pixels: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((pixels, future))
        return await future

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        items = [await self.queue.get()]
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
            items.append(item)
            size += len(item[0])
        return items

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            batch = np.concatenate([pixels for pixels, _ in items])
            self.batch_sizes.append(len(batch))
            try:
                probabilities = await loop.run_in_executor(self.executor, self.run, batch)
            except Exception as exc:
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for pixels, future in items:
                if not future.done():
                    future.set_result(probabilities[start : start + len(pixels)])
                start += len(pixels)


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadInput(f"body of {int(declared):,} bytes is over the limit of {limit:,}", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadInput(f"body is over the limit of {limit:,} bytes", 413)
    return bytes(body)


def requested_top_k(request: Request) -> int | None:
    raw = request.query_params.get("top_k") or request.headers.get("x-top-k")
    return inference.parse_top_k(raw)


def create_app(
    model: str | Path, max_batch_size: int = 16, max_wait_ms: float = 0.0, max_body: int = MAX_BODY
) -> Starlette:
    state: dict[str, Any] = {"predictor": None, "error": None, "batcher": None}

    def load(workdir: Path) -> None:
        try:
            predictor = inference.model_fn(str(resolve_model(model, workdir)))
            size = predictor.image_size
            predictor.probabilities(np.zeros((1, 3, size, size), np.float32))  # warm-up
            state["predictor"] = predictor
            log.info("ready: %s runtime, %d classes", predictor.runtime, len(predictor.classes))
        except Exception as exc:  # start-up fails loudly and /ping never turns healthy
            state["error"] = exc
            log.error("cannot load model %s: %s", model, exc)

    async def start(app: Starlette, workdir: Path) -> None:
        await asyncio.to_thread(load, workdir)
        if state["error"] is not None:
            server = getattr(app.state, "server", None)
            if server is not None:
                server.should_exit = True
            return
        batcher = MicroBatcher(state["predictor"].probabilities, max_batch_size, max_wait_ms)
        state["batcher"] = batcher
        await batcher.serve_forever()

    @asynccontextmanager
    async def lifespan(app: Starlette):
        # an extracted model.tar.gz or an exported checkpoint lives only as long as the server
        with tempfile.TemporaryDirectory(prefix="dogbreed-model-", ignore_cleanup_errors=True) as workdir:
            task = asyncio.create_task(start(app, Path(workdir)))  # serve /ping (503) while the model loads
            yield
            task.cancel()

    async def ping(request: Request) -> Response:
        if state["batcher"] is None:
            return error(
                "model is loading" if state["error"] is None else f"model failed: {state['error']}", 503
            )
        return JSONResponse({"status": "ok", "runtime": state["predictor"].runtime})

    async def invocations(request: Request) -> Response:
        if state["batcher"] is None:
            return error("model is not loaded yet", 503)
        predictor = state["predictor"]
        try:
            top_k = requested_top_k(request)
            body = await read_body(request, max_body)
            decoded = await run_in_threadpool(inference.input_fn, body, request.headers.get("content-type"))
            pixels = await run_in_threadpool(predictor.pixels, decoded)
            started = time.perf_counter()
            probabilities = await state["batcher"].submit(pixels)
            elapsed_ms = (time.perf_counter() - started) * 1000
            result = predictor.top_k(probabilities, top_k or decoded.top_k)
            payload, content_type = inference.output_fn(result, request.headers.get("accept"))
        except BadInput as exc:
            return error(str(exc), exc.status)
        return Response(payload, media_type=content_type, headers={"X-Inference-Ms": f"{elapsed_ms:.1f}"})

    async def card(request: Request) -> Response:
        if state["batcher"] is None:
            return error("model is not loaded yet", 503)
        predictor = state["predictor"]
        return JSONResponse(model_card(predictor.config, predictor.runtime))

    async def index(request: Request) -> Response:
        page = resources.files("dogbreed.serving").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(page)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/ping", ping),
            Route("/model", card),
            Route("/invocations", invocations, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.dogbreed = state
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="a model/ folder, a model.tar.gz or a .ckpt checkpoint")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=0.0, help="wait this long to fill a batch")
    parser.add_argument("--max-body-mb", type=float, default=MAX_BODY / 2**20)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(args.model, args.max_batch_size, args.max_wait_ms, int(args.max_body_mb * 2**20))
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level))
    app.state.server = server
    server.run()
    exc = app.state.dogbreed["error"]
    if exc is not None:  # the model failed to load in the background: say why, as every command does
        report_user_error(exc if isinstance(exc, DogBreedError) else f"{type(exc).__name__}: {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
