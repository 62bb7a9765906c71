"""The Ray Serve image's port-8080 adapter, restated: what SageMaker's requests meet in front of Ray Serve.

    python -I ray_adapter.py PORT      (in the Ray stack's environment: fastapi, httpx, uvicorn)

The behaviour of aws/deep-learning-containers `scripts/docker/ray/sagemaker_serve.py` (Apache-2.0), which
the image runs on 0.0.0.0:8080 after `serve run`: `POST /invocations` goes to Ray Serve's `/` with
Content-Type and Accept (each `application/json` when the client sent none) and the `X-Amzn-SageMaker-*`
headers; the answer keeps the backend's status, body and Content-Type (else the Accept) and only its
`X-Amzn-SageMaker-*` headers; a timeout is 504, an unreachable backend 503, any other failure 500, each a
JSON `{"error": …}`. `GET /ping` is 200 with an empty body while Ray Serve's `/-/healthz` is 200, else 503.
It logs as the image's does, to the container's output: INFO lines on every request and ping (what it got,
what Ray Serve answered), and uvicorn's access log (`log_level="info"`). Replay differences: the port is
an argument (the image hard-codes 8080), and there is no CodeArtifact `install_requirements` (the replay
installs `code/requirements.txt` from the package index itself).
Run with `-I` so that nothing of the model or of this repository is importable here, as in the image.
"""

import json
import logging
import os
import sys
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse

BACKEND = os.getenv("RAYSERVE_BACKEND_URL", "http://127.0.0.1:8000")
TIMEOUT_S = int(os.getenv("RAYSERVE_BACKEND_TIMEOUT", "300"))
SAGEMAKER = "x-amzn-sagemaker-"

logging.basicConfig(level=logging.INFO)
log = logging.getLogger("sagemaker_serve")


def error(status: int, message: str) -> Response:
    return Response(json.dumps({"error": message}), status_code=status, media_type="application/json")


@asynccontextmanager
async def lifespan(app: FastAPI):
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        app.state.client = client
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/invocations")
async def invocations(request: Request) -> Response:
    try:
        body = await request.body()
        content_type = request.headers.get("Content-Type", "application/json")
        accept = request.headers.get("Accept", "application/json")
        log.info(f"Received /invocations request: Content-Type={content_type}, Accept={accept}")
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith(SAGEMAKER)}
        headers["Content-Type"] = content_type
        headers["Accept"] = accept
        answer = await request.app.state.client.post(f"{BACKEND}/", content=body, headers=headers)
        log.info(f"Ray Serve response: status={answer.status_code}")
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("Content-Type", accept),
            headers={k: v for k, v in answer.headers.items() if k.lower().startswith(SAGEMAKER)},
        )
    except httpx.TimeoutException as exc:
        log.error(f"Timeout proxying to Ray Serve: {exc}")
        return error(504, "Request timeout")
    except httpx.ConnectError as exc:
        log.error(f"Cannot connect to Ray Serve: {exc}")
        return error(503, "Service unavailable")
    except Exception as exc:  # the image answers any other failure so
        log.error(f"Error proxying to Ray Serve: {exc}")
        return error(500, str(exc))


@app.get("/ping")
async def ping(request: Request) -> Response:
    try:
        health = await request.app.state.client.get(f"{BACKEND}/-/healthz", timeout=5.0)
    except Exception as exc:
        log.error(f"Health check failed: {exc}")
        return PlainTextResponse("", status_code=503)
    if health.status_code != 200:
        log.warning(f"Health check failed: Ray Serve returned {health.status_code}")
        return PlainTextResponse("", status_code=503)
    log.info("Health check passed")
    return PlainTextResponse("", status_code=200)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="info")
