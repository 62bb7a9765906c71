"""The adapter for AWS's Ray Serve image (`ray:serve-ml-sagemaker`): a Serve deployment around the service.

The image unpacks model.tar.gz into /opt/ml/model, puts it and its `code/` on PYTHONPATH, installs
`code/requirements.txt`, starts Ray, and runs `serve run /opt/ml/model/config.yaml`, which
`dogbreed.serving.package` writes with `import_path: dogbreed.serving.adapters.ray_serve:build`; its own
adapter on port 8080 then proxies `/invocations` (Content-Type, Accept, `X-Amzn-SageMaker-*`) to `/` here.
Replicas, threads and batching come from the model's Environment (`DOGBREED_SERVE_*`, set by
`conf/launch/deploy/*.yaml`; `dogbreed.serving.replicas` reads them): concurrent requests share one model
run through `@serve.batch`, whose size counts images, as dogbreed.serve's MicroBatcher does (a request may
carry up to 64).
Needs the `ray` extra (the image has it).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from dogbreed.container import MODEL_DIR
from dogbreed.serving.replicas import serve_settings
from dogbreed.serving.service import Service, images, in_parts


@serve.deployment(max_ongoing_requests=64)
class Classifier:
    """One replica: the loaded model (warmed up before Ray marks it running) answering HTTP requests."""

    def __init__(
        self, model_dir: str, threads: int, max_batch_size: int, batch_wait_timeout_s: float, spinning: bool
    ) -> None:
        self.service = Service(model_dir, threads=threads, spinning=spinning)
        self.service.warm_up()
        self.idle = asyncio.Event()  # set: no request waits on the model
        self.idle.set()
        self.hold = batch_wait_timeout_s == 0  # with a wait, Ray's batcher collects for that long itself
        self.max_batch_size = max_batch_size
        self.infer.set_max_batch_size(max_batch_size)
        self.infer.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0, batch_size_fn=images)
    async def infer(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """The requests Ray collected, in one model run (in a thread: the event loop keeps decoding)."""
        return await asyncio.to_thread(self.service.infer_batch, batch)

    async def infer_when_idle(self, pixels: np.ndarray) -> np.ndarray:
        """One request's probabilities through `infer`, once the requests before it have theirs. Ray Serve's
        batcher closes a batch when its wait ends, also while the previous batch still runs, so with no wait
        every batch would be one request (ray-project/ray#55126). Held here, the requests that come during
        a run reach the batcher together, as the run ends (those woken pass; later ones wait again), and
        share the next batch: what dogbreed.serve's MicroBatcher does. With a batch wait, held requests
        could not join a batch while it waits, so they are not held."""
        if not self.hold:
            return await self.infer_parts(pixels)
        await self.idle.wait()
        self.idle.clear()
        try:
            return await self.infer_parts(pixels)
        finally:
            self.idle.set()

    async def infer_parts(self, pixels: np.ndarray) -> np.ndarray:
        """One request through `infer` in parts of at most a batch's images: Ray's batcher refuses an item
        larger than its whole batch (a RuntimeError), and a 64-image request is valid."""
        return await in_parts(self.infer, pixels, self.max_batch_size)

    async def __call__(self, request: Request) -> Response:
        body = await request.body()
        answer = await self.service.answer(
            body, request.headers, request.query_params, infer=self.infer_when_idle
        )
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


def build(args: dict[str, Any]) -> Any:
    """The application `serve run config.yaml` starts (`args.model_dir`: default /opt/ml/model)."""
    config = serve_settings(os.environ)
    deployment = Classifier.options(
        num_replicas=config["replicas"], ray_actor_options={"num_cpus": config["num_cpus"]}
    )
    return deployment.bind(
        args.get("model_dir", MODEL_DIR),
        config["threads"],
        config["max_batch_size"],
        config["batch_wait_timeout_s"],
        config["spinning"],
    )
