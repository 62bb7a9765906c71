"""AWS's Ray Serve image (`ray:serve-ml-sagemaker-cpu`, deploy=default), replayed on its own stack.

The container starts as the image's `sagemaker_entrypoint.sh` starts it, in a private mount namespace
where the unpacked model *is* `/opt/ml/model` (`launch.replay.jobs.NAMESPACE`):
`PYTHONPATH=/opt/ml/model:/opt/ml/model/code`, `pip install -r /opt/ml/model/code/requirements.txt` (from
the package index, into a per-replay overlay of the cached environment), `ray start --head`, `serve start`,
`serve run /opt/ml/model/config.yaml` (or `$SM_RAYSERVE_APP`), and the image's port-8080 adapter
(`ray_adapter`, restated), which proxies to `RAYSERVE_BACKEND_URL`. The request's Environment is the
container's. Differences on purpose: free ports instead of fixed ones (several replays run at once: Serve's
proxy, a direct-ingress replica's HTTP port, and `RAYSERVE_BACKEND_URL` moved with them), a private
`--temp-dir`, no dashboard or usage stats, a small object store, and every process in one session that
`session.py` stops as a whole.

The environment has the image's Python 3.13 and packages, torch 2.10.0 included: the image's lock takes
torch from pypi.org, so its CUDA build (about 5 GB) is the image's too, and an eager model (a training
job's, which has no ONNX export) is served on it as in the cloud.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen
from urllib.parse import urlsplit

from dogbreed.container import SERVE_CONFIG
from launch.replay import ReplayError
from launch.replay.environments import StackEnvironment
from launch.replay.jobs import namespace_command
from launch.replay.stacks import container, free_ports, repository, stack_python

ENVIRONMENT = StackEnvironment(image="ray-serve", extras={"ray": "serve"})
REPOSITORY = "ray"  # ray:serve-ml-sagemaker-cpu-v1.4 and the other tags
HERE = Path(__file__).resolve().parent
OBJECT_STORE_BYTES = 256 * 2**20
IMAGE_SERVE_PORT = 8000  # the image's `serve start --http-port` and its adapter's default backend
# the HTTP ports of replicas that serve HTTP themselves (Ray Serve's direct ingress): first, end, defaults
DIRECT_INGRESS_PORTS = {
    "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": 30000,
    "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": 31000,
}

# sagemaker_entrypoint.sh's `serve` branch; `ray` and `serve` run with the overlay's python, so that Ray's
# workers see what requirements.txt installed. Whichever of `serve run` and the adapter ends, ends it.
ENTRYPOINT = """set -e
export PYTHONPATH="/opt/ml/model:/opt/ml/model/code${PYTHONPATH:+:$PYTHONPATH}"
if [ -f /opt/ml/model/code/requirements.txt ]; then
  python -m pip install --disable-pip-version-check --quiet -r /opt/ml/model/code/requirements.txt
fi
python -m ray.scripts.scripts start --head --port="$GCS_PORT" --ray-client-server-port="$CLIENT_PORT" \\
  --dashboard-agent-listen-port="$AGENT_PORT" --min-worker-port=0 --max-worker-port=0 \\
  --num-cpus="$NUM_CPUS" --num-gpus=0 --include-dashboard=false --disable-usage-stats \\
  --object-store-memory="$OBJECT_STORE_BYTES" --temp-dir="$RAY_TEMP"
python -m ray.serve.scripts start --http-host=127.0.0.1 --http-port="$SERVE_PORT"
if [ -f /opt/ml/model/config.yaml ]; then
  python -m ray.serve.scripts run /opt/ml/model/config.yaml &
elif [ -n "$SM_RAYSERVE_APP" ]; then
  python -m ray.serve.scripts run "$SM_RAYSERVE_APP" &
else
  echo "ERROR: No Ray Serve application found: no /opt/ml/model/config.yaml, no SM_RAYSERVE_APP" >&2
  exit 1
fi
python -I "$ADAPTER" "$ADAPTER_PORT" &
wait -n
"""


def serves(image: str) -> bool:
    """Whether an image URI is the Ray Serve image (ECR repository `ray`, any tag, any account)."""
    return repository(image) == REPOSITORY


def check_contract(model: Path, environ: Mapping[str, str], url: str) -> None:
    """What the image needs to find an app."""
    if not (model / SERVE_CONFIG).is_file() and not environ.get("SM_RAYSERVE_APP"):
        raise ReplayError(
            f"ModelDataUrl {url} has no {SERVE_CONFIG} at its root and PrimaryContainer.Environment has "
            "no SM_RAYSERVE_APP: the Ray Serve image would not know what to serve"
        )


def container_environment(base: Path, python: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """This machine's variables less anything Python, Ray or SageMaker reads; then the request's
    Environment; the overlay's python first on PATH."""
    own = ("PYTHON", "VIRTUAL_ENV", "RAY_", "SM_", "SAGEMAKER_", "DOGBREED_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    path = os.pathsep.join([str(python.parent), str(base / "bin"), env.get("PATH", "")])
    return {**env, **environ, "PATH": path, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


def backend_ports(environ: Mapping[str, str], serve_port: int, ingress_port: int) -> dict[str, str]:
    """The variables that fix the adapter's backend, moved to this replay's ports: Serve's proxy (8000 in
    the image) to `serve_port`, the direct-ingress replicas' HTTP range to start at `ingress_port`, and
    `RAYSERVE_BACKEND_URL` to whichever of them it names. Anything else would reach nothing in the
    container: a `ReplayError`."""
    first, end = (int(environ.get(name, default)) for name, default in DIRECT_INGRESS_PORTS.items())
    backend = environ.get("RAYSERVE_BACKEND_URL", f"http://127.0.0.1:{IMAGE_SERVE_PORT}")
    url, moved = urlsplit(backend), {IMAGE_SERVE_PORT: serve_port, first: ingress_port}
    if url.scheme != "http" or url.hostname not in ("127.0.0.1", "localhost") or url.port not in moved:
        raise ReplayError(
            f"PrimaryContainer.Environment RAYSERVE_BACKEND_URL={backend!r} names neither Ray Serve's proxy "
            f"(http://127.0.0.1:{IMAGE_SERVE_PORT}) nor the first direct-ingress replica "
            f"(http://127.0.0.1:{first}, RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT): the image's adapter "
            "would reach nothing"
        )
    return {
        "RAYSERVE_BACKEND_URL": f"http://127.0.0.1:{moved[url.port]}",
        **dict(zip(DIRECT_INGRESS_PORTS, (str(ingress_port), str(ingress_port + end - first)), strict=True)),
    }


@contextmanager
def ray_serve_container(
    model: Path, environ: Mapping[str, str], url: str, log: Path
) -> Iterator[tuple[Popen, str]]:
    """The Ray Serve image's container while the block runs: (its session leader, the adapter's URL).
    `model` is `<tree>/model`, and `<tree>` becomes /opt/ml."""
    check_contract(model, environ, url)
    names = ("ADAPTER", "SERVE", "GCS", "CLIENT", "AGENT", "INGRESS")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    backend = backend_ports(environ, ports["SERVE"], ports["INGRESS"])
    base, python = stack_python(model, ENVIRONMENT)
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths are ≤ 107 bytes
    env = {
        **container_environment(base, python, environ),
        **backend,
        **{f"{name}_PORT": str(port) for name, port in ports.items()},
        "TREE": str(model.parent),
        "HOSTS": "/etc/hosts",
        "ADAPTER": str(HERE / "ray_adapter.py"),
        "NUM_CPUS": str(os.cpu_count() or 1),
        "OBJECT_STORE_BYTES": str(OBJECT_STORE_BYTES),
        "RAY_TEMP": str(temp),
        "RAY_ADDRESS": f"127.0.0.1:{ports['GCS']}",
    }
    with container(namespace_command(["/bin/bash", "-c", ENTRYPOINT]), env, log, temp, stop_timeout=20) as p:
        yield p, f"http://127.0.0.1:{ports['ADAPTER']}"
