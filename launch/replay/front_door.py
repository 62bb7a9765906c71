"""SageMaker's InvokeEndpoint before a replayed endpoint: the container gets only what the service passes.

The rules (`dogbreed.container`): Content-Type, Accept and the `X-Amzn-SageMaker-*` headers SageMaker
forwards, nothing else and no query string; a body of at most 6,291,456 bytes (a larger one never reaches
the container); CustomAttributes of at most 1024 ASCII characters; an answer within 60 s; `/ping` within
2 s. A request the front door refuses gets `{"error": …}` with the status SageMaker's runtime answers
with (400 for a bad request, 413 for a body over the limit, 504 when the container is too slow).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dogbreed.container import (
    INVOKE_HEADERS,
    INVOKE_MAX_BODY,
    INVOKE_MAX_CUSTOM_ATTRIBUTES,
    INVOKE_TIMEOUT_S,
    PING_TIMEOUT_S,
)
from dogbreed.errors import DogBreedError

log = logging.getLogger(__name__)


def refused(status: int, message: str) -> Response:
    return Response(json.dumps({"error": message}), status_code=status, media_type="application/json")


def forwarded_headers(request: Request) -> dict[str, str] | Response:
    """The headers SageMaker passes on, or the refusal of a request it would not accept."""
    headers = {name: value for name, value in request.headers.items() if name.lower() in INVOKE_HEADERS}
    attributes = headers.get("x-amzn-sagemaker-custom-attributes", "")
    if len(attributes) > INVOKE_MAX_CUSTOM_ATTRIBUTES or not attributes.isascii():
        return refused(
            400, f"CustomAttributes must be at most {INVOKE_MAX_CUSTOM_ATTRIBUTES} ASCII characters"
        )
    return headers


async def read_limited(request: Request) -> bytes | Response:
    """The body, or a 413 as soon as it is over the limit (it is never forwarded)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > INVOKE_MAX_BODY:
        return refused(413, f"body of {int(declared):,} bytes is over InvokeEndpoint's {INVOKE_MAX_BODY:,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > INVOKE_MAX_BODY:
            return refused(413, f"body is over InvokeEndpoint's limit of {INVOKE_MAX_BODY:,} bytes")
    return bytes(body)


def front_door_app(container: str, timeout_s: float = INVOKE_TIMEOUT_S) -> Starlette:
    """`POST /invocations` and `GET /ping` on the rules above, proxied to the container at `container`."""
    client = httpx.AsyncClient(base_url=container, timeout=timeout_s)

    async def invocations(request: Request) -> Response:
        headers = forwarded_headers(request)
        if isinstance(headers, Response):
            return headers
        body = await read_limited(request)
        if isinstance(body, Response):
            return body
        try:
            answer = await client.post("/invocations", content=body, headers=headers)
        except httpx.TimeoutException:
            return refused(504, f"the model did not answer within {timeout_s:g} s")
        except httpx.TransportError as exc:
            return refused(502, f"the model container cannot be reached ({type(exc).__name__})")
        kind = answer.headers.get("content-type", "application/octet-stream")
        return Response(answer.content, status_code=answer.status_code, media_type=kind)

    async def ping(request: Request) -> Response:
        try:
            answer = await client.get("/ping", timeout=PING_TIMEOUT_S)
        except httpx.HTTPError:
            return refused(503, f"the container did not answer /ping within {PING_TIMEOUT_S:g} s")
        return Response(
            answer.content, status_code=answer.status_code, media_type=answer.headers.get("content-type")
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    routes = [Route("/invocations", invocations, methods=["POST"]), Route("/ping", ping)]
    return Starlette(routes=routes, lifespan=lifespan)


@contextmanager
def front_door(port: int, container: str, timeout_s: float = INVOKE_TIMEOUT_S) -> Iterator[str]:
    """The front door on 127.0.0.1:`port` while the block runs (a thread of this process); yields its URL."""
    app = front_door_app(container, timeout_s)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="front-door", daemon=True)  # no signal handlers there
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    if not server.started:
        raise DogBreedError(f"the replayed endpoint's front door cannot listen on 127.0.0.1:{port} (in use?)")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
