"""The adapter for AWS's Ray Serve image (`ray:serve-ml-sagemaker`): a Serve deployment around the service.

The image unpacks model.tar.gz into /opt/ml/model, puts it and its `code/` on PYTHONPATH, installs
`code/requirements.txt`, starts Ray, and runs `serve run /opt/ml/model/config.yaml`, which
`dogbreed.serving.package` writes with `import_path: dogbreed.serving.adapters.ray_serve:build`; its own
adapter on port 8080 then proxies `/invocations` (Content-Type, Accept, `X-Amzn-SageMaker-*`) to `/` here.
Replicas, threads and batching come from the model's Environment (`DOGBREED_SERVE_*`, set by
`conf/launch/deploy/*.yaml`): concurrent requests share one model run through `@serve.batch`.
Needs the `ray` extra (the image has it).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from dogbreed.container import MODEL_DIR
from dogbreed.serving.service import Service


@serve.deployment(max_ongoing_requests=64)
class Classifier:
    """One replica: the loaded model (warmed up before Ray marks it running) answering HTTP requests."""

    def __init__(
        self, model_dir: str, threads: int, max_batch_size: int, batch_wait_timeout_s: float
    ) -> None:
        self.service = Service(model_dir, threads=threads)
        self.service.warm_up()
        self.infer.set_max_batch_size(max_batch_size)
        self.infer.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def infer(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """The requests Ray collected, in one model run (in a thread: the event loop keeps decoding)."""
        return await asyncio.to_thread(self.service.infer_batch, batch)

    async def __call__(self, request: Request) -> Response:
        body = await request.body()
        answer = await self.service.answer(body, request.headers, request.query_params, infer=self.infer)
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


def settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """Replicas, threads per replica and batching from the model's Environment; threads default to the
    machine's cores shared among the replicas (more would oversubscribe them)."""
    replicas = int(environ.get("DOGBREED_SERVE_REPLICAS", "1"))
    threads = int(environ.get("DOGBREED_SERVE_THREADS", max(1, (os.cpu_count() or 1) // replicas)))
    return {
        "replicas": replicas,
        "threads": threads,
        "max_batch_size": int(environ.get("DOGBREED_SERVE_MAX_BATCH_SIZE", "16")),
        "batch_wait_timeout_s": float(environ.get("DOGBREED_SERVE_MAX_WAIT_MS", "0")) / 1000,
    }


def build(args: dict[str, Any]) -> Any:
    """The application `serve run config.yaml` starts (`args.model_dir`: default /opt/ml/model)."""
    config = settings(os.environ)
    deployment = Classifier.options(
        num_replicas=config["replicas"], ray_actor_options={"num_cpus": config["threads"]}
    )
    return deployment.bind(
        args.get("model_dir", MODEL_DIR),
        config["threads"],
        config["max_batch_size"],
        config["batch_wait_timeout_s"],
    )
