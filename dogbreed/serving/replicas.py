"""How a serving image shares a machine's cores among model replicas, from the model's Environment: the
Ray Serve app's replicas (`serve_settings`) and TorchServe's workers (`worker_threads`).

Apart from `adapters.ray_serve` so that it imports no Ray (the image has Ray; this repository's environment
does not). The defaults are what `bench/serve.py` measured best on 2 busy cores with int8 (the README's
serving table): two replicas with one ONNX Runtime thread each, rather than one replica with two threads,
whose threads wait for each other whenever the other Ray processes take a core.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

DEFAULT_REPLICAS = 2


def serve_settings(environ: Mapping[str, str], cores: int | None = None) -> dict[str, Any]:
    """Replicas, threads per replica (default: the cores shared among the replicas), each replica's
    logical CPUs for Ray (the cores shared out, so that every replica fits on `ray start`'s CPUs whatever
    its threads), and batching, from `DOGBREED_SERVE_*`."""
    cores = cores or os.cpu_count() or 1
    replicas = int(environ.get("DOGBREED_SERVE_REPLICAS", min(DEFAULT_REPLICAS, cores)))
    threads = int(environ.get("DOGBREED_SERVE_THREADS", max(1, cores // max(1, replicas))))
    if replicas < 1 or threads < 1:
        raise ValueError(f"DOGBREED_SERVE_REPLICAS and _THREADS must be ≥ 1, got {replicas} and {threads}")
    return {
        "replicas": replicas,
        "threads": threads,
        "num_cpus": math.floor(cores / replicas * 10_000) / 10_000,  # Ray counts CPUs in 1/10,000ths
        "max_batch_size": int(environ.get("DOGBREED_SERVE_MAX_BATCH_SIZE", "16")),
        "batch_wait_timeout_s": float(environ.get("DOGBREED_SERVE_MAX_WAIT_MS", "0")) / 1000,
    }


def worker_threads(environ: Mapping[str, str], cores: int | None = None) -> int:
    """Threads per TorchServe worker: `DOGBREED_SERVE_THREADS`, else the cores shared among the workers
    (`SAGEMAKER_MODEL_SERVER_WORKERS`, whose default is one per core). Left to the runtime, every worker
    would use every core (pytorch/serve #1642), and the workers would wait for each other."""
    cores = cores or os.cpu_count() or 1
    workers = int(environ.get("SAGEMAKER_MODEL_SERVER_WORKERS") or cores)
    threads = int(environ.get("DOGBREED_SERVE_THREADS", max(1, cores // max(1, workers))))
    if threads < 1:
        raise ValueError(f"DOGBREED_SERVE_THREADS must be ≥ 1, got {threads}")
    return threads
