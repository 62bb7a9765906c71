"""A local endpoint with SageMaker's container contract, micro-batching, and a demo page.

    python -m dogbreed.serve MODEL [--host 127.0.0.1] [--port 8080] [--max-batch-size 16] [--max-wait-ms 0]

MODEL is a `model/` folder, a `model.tar.gz` or a Lightning checkpoint. `GET /ping` answers 200 once the
model is loaded and has answered a warm-up prediction (503 before); `POST /invocations` is answered by
`dogbreed.serving.service.Service.answer`; `GET /` is a page to drop a photo on. Requests that arrive
while the model is busy are batched together (up to `--max-batch-size` images; `--max-wait-ms` waits for
more).
Needs the `serve` extra (Starlette, uvicorn; ONNX Runtime for exported models).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from dogbreed import command_line
from dogbreed.data.images import BadInput
from dogbreed.errors import exit_on_user_error
from dogbreed.serving.artifact import model_card, resolve_model
from dogbreed.serving.service import Answer, MicroBatcher, Service, failed

log = logging.getLogger("dogbreed.serve")
MAX_BODY = 10 * 1024 * 1024


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def respond(answer: Answer) -> Response:
    timing = {} if answer.inference_ms is None else {"X-Inference-Ms": f"{answer.inference_ms:.1f}"}
    return Response(answer.body, answer.status, timing, media_type=answer.content_type)


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


def create_app(
    model: str | Path, max_batch_size: int = 16, max_wait_ms: float = 0.0, max_body: int = MAX_BODY
) -> Starlette:
    """The app; its `state.dogbreed` holds the service once it has answered a warm-up prediction (or the
    error that stopped it loading) and the batcher its requests share."""
    state: dict[str, Any] = {"service": None, "error": None, "batcher": None}

    def load(workdir: Path) -> Service | None:
        try:
            service = Service(resolve_model(model, workdir))
            service.warm_up()
        except Exception as exc:  # start-up fails loudly and /ping never turns healthy
            state["error"] = exc
            log.error("cannot load model %s: %s", model, exc)
            return None
        log.info("ready: %s runtime, %d classes", service.runtime, len(service.classes))
        return service

    async def start(app: Starlette, workdir: Path) -> None:
        service = await asyncio.to_thread(load, workdir)
        if service is None:
            server = getattr(app.state, "server", None)
            if server is not None:
                server.should_exit = True
            return
        state["batcher"] = MicroBatcher(service.infer_batch, max_batch_size, max_wait_ms)
        state["service"] = service
        await state["batcher"].serve_forever()

    @asynccontextmanager
    async def lifespan(app: Starlette):
        # an extracted model.tar.gz or an exported checkpoint lives only as long as the server
        with tempfile.TemporaryDirectory(prefix="dogbreed-model-", ignore_cleanup_errors=True) as workdir:
            task = asyncio.create_task(start(app, Path(workdir)))  # serve /ping (503) while the model loads
            yield
            task.cancel()

    async def ping(request: Request) -> Response:
        if state["service"] is None:
            return error(
                "model is loading" if state["error"] is None else f"model failed: {state['error']}", 503
            )
        return JSONResponse({"status": "ok", "runtime": state["service"].runtime})

    async def invocations(request: Request) -> Response:
        service = state["service"]
        if service is None:
            return error("model is not loaded yet", 503)
        try:
            body = await read_body(request, max_body)
        except BadInput as exc:
            return respond(failed(exc))
        answer = await service.answer(
            body, request.headers, request.query_params, infer=state["batcher"].submit
        )
        return respond(answer)

    async def card(request: Request) -> Response:
        service = state["service"]
        if service is None:
            return error("model is not loaded yet", 503)
        return JSONResponse(model_card(service.config, service.runtime))

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
    parser = command_line.parser("dogbreed.serve", __doc__)
    parser.add_argument("model", help="a model/ folder, a model.tar.gz or a .ckpt checkpoint")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=command_line.port, default=8080)
    parser.add_argument("--max-batch-size", type=command_line.at_least(1), default=16)
    parser.add_argument(
        "--max-wait-ms",
        type=command_line.at_least(0, float),
        default=0.0,
        help="wait this long to fill a batch",
    )
    parser.add_argument("--max-body-mb", type=float, default=MAX_BODY / 2**20)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if not Path(args.model).exists():  # before the server starts: it loads the model in the background
        parser.error(f"MODEL {args.model} does not exist")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with exit_on_user_error(verbose=args.verbose):
        app = create_app(args.model, args.max_batch_size, args.max_wait_ms, int(args.max_body_mb * 2**20))
        server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level))
        app.state.server = server
        server.run()
        if app.state.dogbreed["error"] is not None:  # the model failed to load in the background: say why
            raise app.state.dogbreed["error"]


if __name__ == "__main__":
    main()
