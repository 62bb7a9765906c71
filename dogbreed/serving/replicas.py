"""How a serving image shares a machine's cores among model replicas, from the model's Environment: the
Ray Serve app's replicas (`serve_settings`) and TorchServe's workers (`worker_threads`).

Apart from `adapters.ray_serve` so that it imports no Ray (the image has Ray; this repository's environment
does not). The default is one replica whose runtime uses every core: a batch-1 request then runs on all of
them, as it does in `dogbreed.serve`, and concurrent requests share its batches. deploy=default adds Ray
Serve's direct ingress (the replica serves HTTP itself, one hop less), which only one replica can use
behind the image's adapter (`bench/serve.py`, the README's serving table).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

DEFAULT_REPLICAS = 1
TRUE = "1"  # Ray's boolean variables are on only as "1"


def serve_settings(environ: Mapping[str, str], cores: int | None = None) -> dict[str, Any]:
    """Replicas, threads per replica (default: the cores shared among the replicas), each replica's
    logical CPUs for Ray (the cores shared out, so that every replica fits on `ray start`'s CPUs whatever
    its threads), batching, and whether ONNX Runtime's threads busy-wait between operators
    (`DOGBREED_SERVE_SPINNING`: "1", ONNX Runtime's default; "0" lets them sleep, leaving the cores to
    Serve's own work in the replica: inconclusive on 2 cores, README "Every stack, quiet"), from
    `DOGBREED_SERVE_*`."""
    cores = cores or os.cpu_count() or 1
    replicas = int(environ.get("DOGBREED_SERVE_REPLICAS", min(DEFAULT_REPLICAS, cores)))
    threads = int(environ.get("DOGBREED_SERVE_THREADS", max(1, cores // max(1, replicas))))
    if replicas < 1 or threads < 1:
        raise ValueError(f"DOGBREED_SERVE_REPLICAS and _THREADS must be ≥ 1, got {replicas} and {threads}")
    spinning = environ.get("DOGBREED_SERVE_SPINNING", TRUE)
    if spinning not in (TRUE, "0"):
        raise ValueError(f"DOGBREED_SERVE_SPINNING must be 1 (busy-wait) or 0 (sleep), got {spinning!r}")
    if replicas > 1 and direct_ingress(environ):
        raise ValueError(
            f"DOGBREED_SERVE_REPLICAS={replicas} with Ray Serve's direct ingress "
            "(RAY_SERVE_THROUGHPUT_OPTIMIZED=1 or RAY_SERVE_ENABLE_DIRECT_INGRESS=1): each replica would "
            "serve HTTP on its own port and the image's adapter reaches one (RAYSERVE_BACKEND_URL); set "
            "DOGBREED_SERVE_REPLICAS=1, or RAY_SERVE_ENABLE_DIRECT_INGRESS=0 and drop RAYSERVE_BACKEND_URL "
            "to put several behind Serve's proxy"
        )
    return {
        "replicas": replicas,
        "threads": threads,
        "num_cpus": math.floor(cores / replicas * 10_000) / 10_000,  # Ray counts CPUs in 1/10,000ths
        "max_batch_size": int(environ.get("DOGBREED_SERVE_MAX_BATCH_SIZE", "16")),
        "batch_wait_timeout_s": float(environ.get("DOGBREED_SERVE_MAX_WAIT_MS", "0")) / 1000,
        "spinning": spinning == TRUE,
    }


def direct_ingress(environ: Mapping[str, str]) -> bool:
    """Whether Ray Serve lets the ingress replicas serve HTTP themselves, as Ray 2.57 reads it:
    `RAY_SERVE_ENABLE_DIRECT_INGRESS`, whose default `RAY_SERVE_THROUGHPUT_OPTIMIZED=1` turns on."""
    optimized = environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == TRUE
    return environ.get("RAY_SERVE_ENABLE_DIRECT_INGRESS", TRUE if optimized else "0") == TRUE


def worker_threads(environ: Mapping[str, str], cores: int | None = None) -> int:
    """Threads per TorchServe worker: `DOGBREED_SERVE_THREADS`, else the cores shared among the workers
    that TorchServe starts (`SAGEMAKER_TS_MIN_WORKERS` when set, as the toolkit's `models=` line says, else
    `SAGEMAKER_MODEL_SERVER_WORKERS`, whose default is one per core). Left to the runtime, every worker
    would use every core (pytorch/serve #1642), and the workers would wait for each other."""
    cores = cores or os.cpu_count() or 1
    started = environ.get("SAGEMAKER_TS_MIN_WORKERS") or environ.get("SAGEMAKER_MODEL_SERVER_WORKERS")
    workers = int(started or cores)
    threads = int(environ.get("DOGBREED_SERVE_THREADS", max(1, cores // max(1, workers))))
    if threads < 1:
        raise ValueError(f"DOGBREED_SERVE_THREADS must be ≥ 1, got {threads}")
    return threads
