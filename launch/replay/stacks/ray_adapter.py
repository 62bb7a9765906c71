"""The Ray Serve image's port-8080 adapter, restated: what SageMaker's requests meet in front of Ray Serve.

    python -I ray_adapter.py PORT      (in the Ray stack's environment: fastapi, httpx, uvicorn)

The behaviour of aws/deep-learning-containers `scripts/docker/ray/sagemaker_serve.py` (Apache-2.0), which
the image runs on 0.0.0.0:8080 after `serve run`: `POST /invocations` goes to Ray Serve's `/` with
Content-Type and Accept (each `application/json` when the client sent none) and the `X-Amzn-SageMaker-*`
headers; the answer keeps the backend's status, body and Content-Type (else the Accept) and only its
`X-Amzn-SageMaker-*` headers; a timeout is 504, an unreachable backend 503, any other failure 500, each a
JSON `{"error": …}`. `GET /ping` is 200 with an empty body while Ray Serve's `/-/healthz` is 200, else 503.
Replay differences: the port is an argument (the image hard-codes 8080), and there is no CodeArtifact
`install_requirements` (the replay installs `code/requirements.txt` from the package index itself).
Run with `-I` so that nothing of the model or of this repository is importable here, as in the image.
"""

import json
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
        accept = request.headers.get("Accept", "application/json")
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith(SAGEMAKER)}
        headers["Content-Type"] = request.headers.get("Content-Type", "application/json")
        headers["Accept"] = accept
        body = await request.body()
        answer = await request.app.state.client.post(f"{BACKEND}/", content=body, headers=headers)
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("Content-Type", accept),
            headers={k: v for k, v in answer.headers.items() if k.lower().startswith(SAGEMAKER)},
        )
    except httpx.TimeoutException:
        return error(504, "Request timeout")
    except httpx.ConnectError:
        return error(503, "Service unavailable")
    except Exception as exc:  # the image answers any other failure so
        return error(500, str(exc))


@app.get("/ping")
async def ping(request: Request) -> Response:
    try:
        health = await request.app.state.client.get(f"{BACKEND}/-/healthz", timeout=5.0)
        return PlainTextResponse("", status_code=200 if health.status_code == 200 else 503)
    except Exception:
        return PlainTextResponse("", status_code=503)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
