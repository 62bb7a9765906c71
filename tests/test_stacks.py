"""The images' own stacks, replayed: deploy=… replay=true → invoke → delete, against moto, on each of
the Ray Serve image's stack (deploy=default) and the PyTorch inference image's (deploy=torchserve).

One stack per module and image (each takes 30-120 s to turn healthy here): an exported (ONNX) model
packaged as the launcher packages it, deployed to the emulator, and its CreateModel request replayed by
`replay_endpoint` in a child process, as the launcher runs it. Everything is sent through that endpoint's
front door and compared with `dogbreed.serve` on the same model; the last test of each stack stops the
launcher with SIGTERM and looks for what it left, by session and process tree.

The archive has one test-only addition: `code/fault_on_demand.py`, named by config.yaml (Ray) and
re-exported by code/inference.py (the toolkit), which wraps the real application and handler with one
change: a model run on an all-`MARKER` array raises, a server fault that is not the client's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from urllib.parse import urlsplit

import httpx
import numpy as np
import psutil
import pytest
from omegaconf import OmegaConf
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dogbreed.container import ENDPOINT_ENVIRONMENT, MODEL_DIR, TOOLKIT_ENVIRONMENT
from dogbreed.errors import DogBreedError
from dogbreed.processes import child
from dogbreed.serving.package import add_inference_code, build_model_tar
from dogbreed.serving.server import create_app
from launch.commands.deploy import container_environment
from launch.images import profile
from launch.replay import ReplayError, environments
from launch.replay.endpoint import endpoint_server
from launch.replay.environments import COMPLETE, environment, location, remove, requirements, stale
from launch.replay.stacks import free_port, free_ports, ping_plugin, ray_serve, torchserve, training
from tests import test_inference
from tests.conftest import HANG_GUARD_S, REAL_DOGS, REPO
from tests.test_images import png_claiming
from tests.test_launch import BUCKET, CLEAN, ROLE, client, deploy_in_process, launch, moto, request  # noqa: F401
from tests.test_serve import in_process, npy, post, wait_ready

pytestmark = pytest.mark.slow
PHOTOS = sorted(REAL_DOGS.glob("*.jpg"))
MARKER = -1234.5
FAULT_ON_DEMAND = f'''"""Test-only: the real dogbreed app and handler; a run on all-{MARKER} pixels raises."""

import numpy as np

from dogbreed.serving.adapters import toolkit
from dogbreed.serving.adapters.toolkit import transform_fn  # noqa: F401  (the toolkit's handler)


def break_on_marker(service):
    real = service.probabilities

    def probabilities(pixels):
        if np.all(pixels == {MARKER}):
            raise RuntimeError(f"runtime exploded in {{__file__}}")
        return real(pixels)

    service.probabilities = probabilities
    return service


def model_fn(model_dir):  # the PyTorch image's toolkit
    return break_on_marker(toolkit.model_fn(model_dir))


def build(args):  # the Ray Serve image's `serve run` of config.yaml
    from ray import serve

    from dogbreed.serving.adapters import ray_serve

    class FaultOnDemand(ray_serve.Classifier.func_or_class):
        def __init__(self, *args):
            super().__init__(*args)
            break_on_marker(self.service)

    ray_serve.Classifier = serve.deployment(max_ongoing_requests=64)(FaultOnDemand)
    return ray_serve.build(args)
'''
TOOLKIT_ENTRY = b"from fault_on_demand import model_fn, transform_fn  # noqa: F401\n"
# What differs between the stacks: the deploy option and its overrides, the image, the Python, a package
# only the cached environment holds, the processes that serve (and the variable that counts them), the
# daemons, the temp folders, and the log line after which /ping would stay unhealthy for ever.
STACKS = {
    "ray": SimpleNamespace(
        deploy="default",
        overrides=(),
        image="/ray:serve-ml-sagemaker-cpu-v1.4",
        python="3.13",
        cached="ray",
        worker="ServeReplica:dogbreed",
        count="DOGBREED_SERVE_REPLICAS",
        pythonpath="/opt/ml/model:/opt/ml/model/code",
        daemons=("gcs_server", "raylet", "ray::ServeController", "ray::ServeReplica", "ray_adapter.py"),
        temp=r"/tmp/ray-\w+",
        failed="Exception importing application",
    ),
    "torchserve": SimpleNamespace(
        deploy="torchserve",
        # the toolkit's per-model settings, none at TorchServe's defaults, for ts.properties' models= line
        overrides=tuple(
            f"+deploy.environment.SAGEMAKER_TS_{key}='{value}'"
            for key, value in {
                "MIN_WORKERS": 2,
                "MAX_WORKERS": 3,
                "MAX_BATCH_DELAY": 50,
                "RESPONSE_TIMEOUT": 59,
            }.items()
        ),
        image="/pytorch-inference:2.6-cpu-py312",
        python="3.12",
        cached="ts",
        worker="model_service_worker.py",
        count="SAGEMAKER_TS_MIN_WORKERS",  # the workers TorchServe starts
        pythonpath="/opt/ml/model/code:/opt/ml/model",  # after the toolkit's own package
        daemons=("org.pytorch.serve.ModelServer", "model_service_worker.py", "serving.main()"),
        temp=r"/tmp/torchserve-\w+",
        failed="Load model failed",
    ),
}
# What the launcher does with deploy=… replay=true once the requests are sent (launch/commands/deploy.py).
LAUNCHER = """import json, sys
from pathlib import Path
import boto3
from launch.replay.endpoint import replay_endpoint
request, work, port = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), int(sys.argv[3])
sys.exit(replay_endpoint(request, boto3.Session().client("s3"), work, port))
"""


def bad_inputs() -> list[tuple[bytes, str]]:
    """The serving corpus's bad requests: tests/test_inference.py's table and tests/test_serve.py's."""
    (table,) = (
        m for m in test_inference.test_bad_requests_are_client_errors.pytestmark if m.name == "parametrize"
    )
    jpeg = PHOTOS[0].read_bytes()
    served = [
        (b"", "image/jpeg"),
        (b"hello", "image/jpeg"),
        (jpeg[: len(jpeg) // 3], "image/jpeg"),
        (b"hello", "text/plain"),
        (b'{"image": ', "application/json"),
        (b'{"image": "**not base64**"}', "application/json"),
        (npy(np.zeros((1, 3, 32, 32), np.float32)), "application/x-npy"),
        (npy(np.zeros((1, 3, 64, 64), np.int64)), "application/x-npy"),
        (b"x" * (2 * 2**20), "image/jpeg"),
        (png_claiming(8000, 8000), "image/png"),
        (png_claiming(100_000, 100_000), "image/png"),
    ]
    return [(body, kind) for body, kind, *_ in table.args[1]] + served


def instrumented_archive(model: Path, out: Path) -> Path:
    """The launcher's model.tar.gz of `model`, with `fault_on_demand` as config.yaml's application and as
    what code/inference.py exports."""
    plain = build_model_tar(model, out.with_name("plain.tar.gz"))
    with tarfile.open(plain) as old, tarfile.open(out, "w:gz") as new:
        for member in old.getmembers():
            content = old.extractfile(member).read() if member.isfile() else None
            if member.name == "config.yaml":
                content = content.replace(
                    b"dogbreed.serving.adapters.ray_serve:build", b"fault_on_demand:build"
                )
            elif member.name == "code/inference.py":
                content = TOOLKIT_ENTRY
            if content is not None:
                member.size = len(content)
            new.addfile(member, io.BytesIO(content) if content is not None else None)
        extra = tarfile.TarInfo("code/fault_on_demand.py")
        extra.size = len(FAULT_ON_DEMAND.encode())
        new.addfile(extra, io.BytesIO(FAULT_ON_DEMAND.encode()))
    return out


@contextlib.contextmanager
def printed() -> Iterator[SimpleNamespace]:
    """What `deploy_in_process` reads from capsys, at module scope: this block's stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        yield SimpleNamespace(readouterr=lambda: SimpleNamespace(out=out.getvalue()))


def wait_healthy(
    url: str, launcher: subprocess.Popen, log: Path, failed: str, timeout: float = 600
) -> tuple[float, httpx.Response]:
    """Seconds until the front door's /ping is 200, and the answer to a photo sent at once after that;
    the container log's tail if it never is (`timeout` is a hang guard, not a speed check)."""
    started = time.monotonic()
    text = ""
    while time.monotonic() - started < timeout and launcher.poll() is None and failed not in text:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/ping", timeout=3).status_code == 200:
                ready_s = time.monotonic() - started
                # on every stack /ping is 200 only once the model has answered a warm-up, so this is
                # answered at once (a generous hang guard; the front door's 60 s limit still applies)
                photo = PHOTOS[0].read_bytes()
                headers = {"Content-Type": "image/jpeg"}
                return ready_s, httpx.post(f"{url}/invocations", content=photo, headers=headers, timeout=120)
        time.sleep(1)
        text = log.read_text(errors="replace") if log.is_file() else ""
    if failed in text:
        time.sleep(5)  # the traceback follows that line
        text = log.read_text(errors="replace")
        text = text[text.index(failed) :]
    tail = text[-4000:] or "(no container log)"
    raise AssertionError(f"the stack never turned healthy (launcher: {launcher.poll()}):\n{tail}")


@pytest.fixture(scope="module", params=sorted(STACKS))
def endpoint(
    request: pytest.FixtureRequest,
    moto: dict[str, str],  # noqa: F811
    exported_model: Path,
    tmp_path_factory,
) -> Iterator[SimpleNamespace]:
    """deploy=<the stack's option> of an exported model, replayed by a launcher process on that stack."""
    stack = STACKS[request.param]
    root = tmp_path_factory.mktemp(f"stacks-{request.param}")
    job = f"dogbreed-stacks-{request.param}-job"
    output = f"s3://{BUCKET}/dogbreed/jobs"
    client(moto, "sagemaker").create_training_job(
        TrainingJobName=job,
        AlgorithmSpecification={"TrainingImage": "x", "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": output},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    archive = instrumented_archive(exported_model, root / "model.tar.gz")
    client(moto, "s3").upload_file(str(archive), BUCKET, f"dogbreed/jobs/{job}/output/model.tar.gz")
    with pytest.MonkeyPatch.context() as patch, printed() as capsys:
        name = deploy_in_process(moto, root / "deploy", job, patch, capsys, stack.deploy, *stack.overrides)
    port, work = free_port(), root / "replay"
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            LAUNCHER,
            str(root / "deploy" / "requests" / "CreateModel.json"),
            str(work),
            str(port),
        ],
        cwd=REPO,
        env={**CLEAN, **moto},
        stdout=(root / "launcher.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready_s, first = wait_healthy(url, launcher, work / "container.log", stack.failed)
        print(f"the {request.param} stack answered /ping after {ready_s:.0f} s")
        yield SimpleNamespace(
            url=url, port=port, name=name, root=root, launcher=launcher, work=work, stack=stack, first=first
        )
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
            launcher.wait(60)


@pytest.fixture(scope="module")
def reference(exported_model: Path) -> Iterator[str]:
    """`dogbreed.serve` on the same model, in this process."""
    with in_process(create_app(exported_model)) as url:
        wait_ready(url)
        yield url


def test_deploy_replays_on_the_images_stack_and_invoke_and_delete_go_through(
    endpoint: SimpleNamespace,
    tmp_path: Path,
    moto: dict[str, str],  # noqa: F811
) -> None:
    create_model = request(endpoint.root / "deploy", "CreateModel")["PrimaryContainer"]
    assert create_model["Image"].endswith(endpoint.stack.image)
    # code/requirements.txt (onnxruntime) went into this replay's overlay, not into the cached environment
    site = f"lib/python{endpoint.stack.python}/site-packages"
    overlay = endpoint.work / "stack-env"
    assert list(overlay.glob(f"{site}/onnxruntime/__init__.py"))
    base = Path((next(overlay.glob(f"{site}/stack-base.pth"))).read_text().splitlines()[0])
    assert not (base / "onnxruntime").exists() and (base / endpoint.stack.cached).is_dir()
    invoked = launch(
        tmp_path / "invoke",
        f"invoke={endpoint.name}",
        "replay=true",
        f"local_port={endpoint.port}",
        f"image={PHOTOS[0]}",
    )
    assert invoked.returncode == 0, invoked.stderr[-3000:]
    assert invoked.stdout.count("%") == 5 and "1. " in invoked.stdout  # top-5
    deleted = launch(tmp_path / "delete", f"delete={endpoint.name}", env=moto)
    assert deleted.returncode == 0 and f"deleted endpoint {endpoint.name}" in deleted.stdout


def test_a_photo_sent_as_soon_as_ping_is_healthy_is_answered(endpoint: SimpleNamespace) -> None:
    # sent at once after the first 200 from /ping (the fixture's wait_healthy)
    assert endpoint.first.status_code == 200, endpoint.first.text
    assert len(endpoint.first.json()[0]) == 5


def test_the_requests_environment_reaches_the_serving_processes(endpoint: SimpleNamespace) -> None:
    environment = request(endpoint.root / "deploy", "CreateModel")["PrimaryContainer"]["Environment"]
    expected = int(environment[endpoint.stack.count])  # deploy=default ships 1 replica; 2 TorchServe workers
    # every replica or worker: on TorchServe /ping is healthy once the first has loaded the model
    deadline = time.monotonic() + HANG_GUARD_S
    while (
        len(workers := [p for p in stack_processes(endpoint.launcher) if endpoint.stack.worker in name_of(p)])
        < expected
        and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    assert len(workers) == expected
    seen = workers[0].environ()
    # except the ports a replay moves to free ones (several run at once): present, with other values
    if endpoint.stack is STACKS["ray"]:
        moved = set(ray_serve.backend_ports(environment, 1, 1))
    else:
        moved = {"SAGEMAKER_BIND_TO_PORT"}  # the deploy's 8080 (what ts.properties reads), a free port here
    kept = {k: v for k, v in environment.items() if k not in moved}
    assert {k: seen.get(k) for k in kept} == kept
    assert all(seen.get(k) not in (None, environment[k]) for k in moved)
    assert f":{endpoint.stack.pythonpath}:" in f":{seen['PYTHONPATH']}:"  # the image's PYTHONPATH, in order


def test_every_bad_input_is_the_same_4xx_as_dogbreed_serve_and_json_without_a_traceback(
    endpoint: SimpleNamespace, reference: str
) -> None:
    for body, kind in bad_inputs():
        expected, got = post(reference, body, kind), post(endpoint.url, body, kind)
        assert 400 <= expected.status_code < 500, (kind, body[:40], expected.text)
        assert got.status_code == expected.status_code, (kind, body[:40], got.text)
        assert got.headers["content-type"].startswith("application/json")
        assert got.json() == expected.json() and "Traceback" not in got.text
    assert post(endpoint.url, PHOTOS[0].read_bytes(), "image/jpeg").status_code == 200


def test_the_seven_photos_get_the_same_top5_as_from_dogbreed_serve(
    endpoint: SimpleNamespace, reference: str
) -> None:
    assert len(PHOTOS) == 7
    top5 = []
    for photo in PHOTOS:
        expected = post(reference, photo.read_bytes(), "image/jpeg").json()[0]
        got = post(endpoint.url, photo.read_bytes(), "image/jpeg").json()[0]
        assert [p["label"] for p in got] == [p["label"] for p in expected], photo.name
        assert [p["probability"] for p in got] == pytest.approx(
            [p["probability"] for p in expected], abs=1e-6
        )
        top5.append([p["label"] for p in got])
    # the seven three times in one request: more images than a model run takes (16), answered in order
    instances = [{"b64": base64.b64encode(photo.read_bytes()).decode()} for photo in PHOTOS] * 3
    together = post(endpoint.url, json.dumps({"instances": instances}).encode(), "application/json")
    assert together.status_code == 200, together.text
    assert [[p["label"] for p in row] for row in together.json()] == top5 * 3


def test_a_server_fault_is_a_500_json_body_that_leaks_nothing(endpoint: SimpleNamespace) -> None:
    failed = post(endpoint.url, npy(np.full((1, 3, 64, 64), MARKER, np.float32)), "application/x-npy")
    assert failed.status_code == 500
    assert failed.json() == {"error": "internal error: RuntimeError"}
    assert "Traceback" not in failed.text and "/opt/ml" not in failed.text
    assert post(endpoint.url, PHOTOS[0].read_bytes(), "image/jpeg").status_code == 200


def name_of(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(process.cmdline()) or process.name()
    return ""


def stack_processes(launcher: subprocess.Popen) -> list[psutil.Process]:
    """The launcher's process tree, and every process of the sessions its children lead."""
    tree = psutil.Process(launcher.pid).children(recursive=True)
    leaders = {p.pid for p in tree if p.pid == os.getsid(p.pid)}
    in_sessions = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getsid(process.pid) in leaders:
                in_sessions.append(process)
    return list({p.pid: p for p in [*tree, *in_sessions]}.values())


def listeners(processes: list[psutil.Process]) -> dict[int, psutil.Process]:
    """TCP port → the stack's process listening on it."""
    ports = {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            for connection in process.net_connections(kind="tcp"):
                if connection.status == psutil.CONN_LISTEN:
                    ports[connection.laddr.port] = process
    return ports


def test_ping_is_503_until_the_model_has_answered(endpoint: SimpleNamespace) -> None:
    """Ray (deploy=default, direct ingress): the image's adapter proxies /ping to the replica's own HTTP
    server, which Ray Serve starts only after the replica's constructor has loaded the model and answered
    its warm-up. TorchServe: its Java frontend answers /ping through dogbreed's plugin (Ping.java, loaded
    by the archive's ts.properties), 503 while no worker has loaded the model, which model_fn does only
    after a warm-up; shown by scaling the workers to none and back through TorchServe's management API."""
    processes = stack_processes(endpoint.launcher)
    ports = listeners(processes)
    if endpoint.stack is STACKS["ray"]:
        adapter = next(p for p in processes if "ray_adapter.py" in name_of(p))
        backend = urlsplit(adapter.environ()["RAYSERVE_BACKEND_URL"])
        assert endpoint.stack.worker in name_of(ports[backend.port]), name_of(ports[backend.port])
        assert httpx.get(f"http://127.0.0.1:{backend.port}/-/healthz").status_code == 200
        return
    assert ports and all("org.pytorch.serve.ModelServer" in name_of(p) for p in ports.values())
    frontend = next(iter(ports.values()))
    # inference and management share SAGEMAKER_BIND_TO_PORT, as in the image
    management = f"http://127.0.0.1:{frontend.environ()['SAGEMAKER_BIND_TO_PORT']}/models/model"
    java = cmdline(frontend)  # the jar's folder on the classpath, from the archive's plugins_path
    assert f"{MODEL_DIR}/code/dogbreed/serving/adapters/toolkit/plugins/*" in java[java.index("-cp") + 1]
    healthy = httpx.get(f"{endpoint.url}/ping")
    assert healthy.status_code == 200 and healthy.json() == {"status": "ok"}
    (described,) = httpx.get(management).json()
    # ts.properties' models= line, from the SAGEMAKER_TS_* the deploy sent
    environment = request(endpoint.root / "deploy", "CreateModel")["PrimaryContainer"]["Environment"]
    for key, field in (
        ("MIN_WORKERS", "minWorkers"),
        ("MAX_WORKERS", "maxWorkers"),
        ("BATCH_SIZE", "batchSize"),
        ("MAX_BATCH_DELAY", "maxBatchDelay"),
        ("RESPONSE_TIMEOUT", "responseTimeout"),
    ):
        assert described[field] == int(environment[f"SAGEMAKER_TS_{key}"]), (field, described)
    workers = described["minWorkers"]
    try:
        scaled = httpx.put(
            management, params={"min_worker": 0, "max_worker": 0, "synchronous": "true"}, timeout=120
        )
        assert scaled.status_code == 200, scaled.text
        loading = httpx.get(f"{endpoint.url}/ping")
        assert loading.status_code == 503 and loading.json() == {"error": "model is loading"}
    finally:
        back = {"min_worker": workers, "max_worker": workers, "synchronous": "true"}
        assert httpx.put(management, params=back, timeout=HANG_GUARD_S).status_code == 200
    assert httpx.get(f"{endpoint.url}/ping").status_code == 200  # synchronous: back once a worker loaded


def test_sigterm_to_the_launcher_leaves_no_process_behind(endpoint: SimpleNamespace) -> None:
    processes = stack_processes(endpoint.launcher)
    names = " ".join(name_of(p) for p in processes)
    for daemon in endpoint.stack.daemons:
        assert daemon in names, f"{daemon} is not among the stack's processes: {names}"
    temp_dirs = {d for p in processes for d in re.findall(endpoint.stack.temp, " ".join(cmdline(p)))}
    endpoint.launcher.send_signal(signal.SIGTERM)
    assert endpoint.launcher.wait(60) == 128 + signal.SIGTERM
    _, alive = psutil.wait_procs(processes, timeout=10)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [name_of(p) for p in alive]
    assert temp_dirs and not any(Path(d).exists() for d in temp_dirs)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{endpoint.url}/ping", timeout=2)


def cmdline(process: psutil.Process) -> list[str]:
    with contextlib.suppress(psutil.Error):
        return process.cmdline()
    return []


def test_the_environment_is_the_images_lock() -> None:
    lines = requirements(ray_serve.ENVIRONMENT)
    pins = profile("ray-serve").packages
    assert f"ray[serve]=={pins.ray}" in lines and f"numpy=={pins.numpy}" in lines
    assert f"pillow=={pins.pillow}" in lines and "jinja2==3.1.6" in lines  # ray imports it undeclared
    # the HTTP stack each request crosses, at the image's uv.lock versions, not the index's newest
    assert {"uvloop==0.22.1", "httptools==0.7.1", "starlette==1.3.1", "grpcio==1.80.0"} <= set(lines)
    # torch's CUDA build, as the image's lock takes it from pypi.org, its libraries at the lock's versions
    assert {"triton==3.6.0", "nvidia-cudnn-cu12==9.10.2.21", "nvidia-nccl-cu12==2.27.5"} <= set(lines)


BATCHING = """# Ray Serve's real batcher under the Ray adapter's Classifier; the model a stand-in that blocks
import asyncio, json, sys, threading
import numpy as np
from ray.serve import batching
from dogbreed.serving.adapters import ray_serve

sizes, entered, release = [], threading.Event(), threading.Event()

class Service:
    def __init__(self, model_dir, threads, spinning): pass
    def warm_up(self): pass
    def infer_batch(self, batch):
        sizes.append(sum(len(pixels) for pixels in batch)); entered.set(); release.wait(30)
        return list(batch)

ray_serve.Service = Service
# asks the replica's context for max_ongoing_requests, only to warn: there is no replica here
batching._BatchQueue._warn_if_max_batch_size_exceeds_max_ongoing_requests = lambda self: None

async def main():
    wait_s, images = float(sys.argv[1]), int(sys.argv[2])
    classifier = ray_serve.Classifier.func_or_class("/opt/ml/model", 1, 4, wait_s, True)
    call = classifier.infer_when_idle  # what the replica's requests go through
    if wait_s:  # Ray's batcher waits for a full batch of 4, and nothing is held from it
        release.set()
    first = asyncio.create_task(call(np.zeros(1)))
    if not wait_s:
        await asyncio.to_thread(entered.wait, 30)  # the first request's batch is in the model
    later = []
    for i in range(1, 4):  # three more, one by one, while it runs (or waits)
        later.append(asyncio.create_task(call(np.full(images, float(i)))))
        await asyncio.sleep(0.05)
    release.set()
    # a hang guard, not a speed check: requests held from a batch that waits would wait out its 600 s
    answers = await asyncio.wait_for(asyncio.gather(first, *later), 120)
    held = len(sizes)
    big = await asyncio.wait_for(call(np.arange(9.0)), 120) if not wait_s else np.zeros(0)
    print(json.dumps([sizes[:held], [a.tolist() for a in answers], sizes[held:], big.tolist()]))

asyncio.run(main())
"""


def ray_batching(wait_s: float, images: int, tmp_path: Path) -> list:
    """BATCHING's run in the Ray stack's environment: [batch sizes in images, the four answers, the 9-image
    request's batch sizes, its answer]."""
    script = tmp_path / "batching.py"
    script.write_text(BATCHING)
    python = environment(ray_serve.ENVIRONMENT) / "bin" / "python"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    out = subprocess.run(
        [str(python), str(script), str(wait_s), str(images)],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("wait_s", "batches"), [(0, [1, 3]), (600, [4])], ids=["no-wait", "wait"])
def test_requests_that_come_during_a_model_run_share_the_next_batch(
    wait_s: int, batches: list[int], tmp_path: Path
) -> None:
    """With no batch wait, the three requests that come one by one during the first run are held and are
    one batch after it, whatever the timing (through `infer` alone each would be its own, [1, 1, 1, 1]).
    With a wait, nothing is held from Ray Serve's batcher: the four are one batch as soon as it is full
    (held, the first would wait the whole 600 s alone)."""
    sizes, answers, _, _ = ray_batching(wait_s, 1, tmp_path)
    assert sizes == batches and answers == [[0.0], [1.0], [2.0], [3.0]]


def test_a_batch_counts_images_and_a_request_larger_than_a_batch_is_answered_whole(tmp_path: Path) -> None:
    """DOGBREED_SERVE_MAX_BATCH_SIZE (4 here) bounds the images in one model run, as in dogbreed.serve:
    the three held 2-image requests are a batch of 4 and one of 2 (counted in requests, one of 6), and a
    9-image request, which Ray's batcher would refuse whole, runs in parts of at most 4 and comes back
    whole, in order."""
    sizes, answers, parts, big = ray_batching(0, 2, tmp_path)
    assert sizes == [1, 4, 2] and answers == [[0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]
    assert sorted(parts) == [1, 4, 4] and big == [float(i) for i in range(9)]


@pytest.mark.parametrize(
    "stack, torch, torchvision, python",
    [(ray_serve, "2.10.0", "0.25.0", "3.13"), (torchserve, "2.6.0", "0.21.0", "3.12")],
)
def test_each_serving_environment_has_its_images_own_torch(stack, torch, torchvision, python) -> None:
    """An eager model (a training job's archive has no ONNX export) runs on the torch the cloud runs it on,
    on the image's Python: not this repository's, nor the training image's."""
    image = profile(stack.ENVIRONMENT.image)
    lines = requirements(stack.ENVIRONMENT)
    assert {f"torch=={torch}", f"torchvision=={torchvision}"} <= set(lines) and image.python == python
    if stack is torchserve:
        for name in ("torchserve", "sagemaker-pytorch-inference"):
            assert f"{name}=={image.packages[name]}" in lines


def test_a_build_with_too_little_disk_is_one_line_before_anything_is_written(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("DOGBREED_STACKS", str(tmp_path / "stacks"))
    monkeypatch.setattr(
        environments.shutil, "disk_usage", lambda path: SimpleNamespace(total=10e9, used=8e9, free=2e9)
    )
    with pytest.raises(DogBreedError, match=r"takes up to 8 GB and .* has 2\.0 GB free: free some space"):
        environment(training.ENVIRONMENT)
    with pytest.raises(DogBreedError, match=r"building 3 replay environment\(s\) takes up to 24 GB"):
        environments.check_space(3)
    assert not (tmp_path / "stacks").exists()


def test_environments_no_stack_uses_are_found_and_pruned_but_not_while_building(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("DOGBREED_STACKS", str(tmp_path))
    current = location(training.ENVIRONMENT)[0]  # where today's profile builds it (nothing is built)
    old, unknown, other = (
        tmp_path / n for n in ("pytorch-amzn2023-0123456789ab", "foo-0123456789ab", "notes")
    )
    building = tmp_path / "ray-serve-aaaaaaaaaaaa"
    for folder in (current, old, unknown, other, building):
        (folder / "lib").mkdir(parents=True)
        (folder / "lib" / "torch.so").write_bytes(b"x" * 10)
    (old / COMPLETE).write_text("{}")
    old.with_name(f"{old.name}.build.log").write_text("pip's log")
    assert stale([current]) == [old, building]  # only a known image's name with a content key
    with open(building.with_name(f"{building.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a build in progress
        assert remove(building) is False and (building / "lib" / "torch.so").is_file()
    assert remove(old) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [current.name, unknown.name, other.name, building.name, f"{building.name}.lock"]
    )


def test_a_model_the_toolkit_cannot_load_is_one_line_naming_why(exported_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "opt_ml" / "model"
    shutil.copytree(exported_model, model)
    add_inference_code(model)
    url, env = "s3://b/model.tar.gz", dict(ENDPOINT_ENVIRONMENT)
    torchserve.check_contract(model, env, url)
    with pytest.raises(ReplayError, match="Environment has no SAGEMAKER_PROGRAM: the image would not find"):
        torchserve.check_contract(model, {}, url)
    with pytest.raises(ReplayError, match=r"SAGEMAKER_SUBMIT_DIRECTORY='/srv' is outside /opt/ml/model"):
        torchserve.check_contract(model, {**env, "SAGEMAKER_SUBMIT_DIRECTORY": "/srv"}, url)
    with pytest.raises(ReplayError, match=r"SAGEMAKER_PROGRAM='serve\.py' is not in .* \(dogbreed, infer"):
        torchserve.check_contract(model, {**env, "SAGEMAKER_PROGRAM": "serve.py"}, url)
    toolkit = container_environment(OmegaConf.load(REPO / "conf" / "launch" / "deploy" / "torchserve.yaml"))
    torchserve.check_contract(model, toolkit, url)
    properties = model / PurePosixPath(TOOLKIT_ENVIRONMENT["TS_CONFIG_FILE"]).relative_to(MODEL_DIR)
    unset = {k: v for k, v in toolkit.items() if k != "SAGEMAKER_TS_MIN_WORKERS"}
    with pytest.raises(
        ReplayError, match=r"reads SAGEMAKER_TS_MIN_WORKERS, which .* not set: TorchServe would"
    ):
        torchserve.check_contract(model, unset, url)
    text = properties.read_text()
    properties.write_text(text.replace(text[text.index("models=") :], ""))  # as packaged before 2026-12-07
    with pytest.raises(
        ReplayError, match=r"sets SAGEMAKER_TS_BATCH_SIZE, .* which TS_CONFIG_FILE .* package"
    ):
        torchserve.check_contract(model, toolkit, url)
    properties.unlink()
    with pytest.raises(
        ReplayError,
        match=r"TS_CONFIG_FILE='/opt/ml/model/code/.*' is not in ModelDataUrl s3://b/.*package it",
    ):
        torchserve.check_contract(model, toolkit, url)
    (model / "code" / "inference.py").write_text("from dogbreed.serving.adapters.toolkit import model_fn\n")
    with pytest.raises(
        ReplayError,
        match=r"SAGEMAKER_PROGRAM inference\.py in s3://b/model\.tar\.gz does not define transform_fn",
    ):
        torchserve.check_contract(model, env, url)
    (model / "code" / "inference.py").write_text("import not_here\n")
    with pytest.raises(ReplayError, match="does not import: ModuleNotFoundError: No module named 'not_here'"):
        torchserve.check_contract(model, env, url)


def test_the_committed_ping_plugin_is_what_its_source_compiles_to(tmp_path: Path) -> None:
    """`python -m launch.replay.stacks.ping_plugin`, against the TorchServe environment's frontend jar:
    the same jar, byte for byte, when this ecj is the one that built it (Debian bookworm's, as in CI)."""
    rebuilt = ping_plugin.build(tmp_path / "dogbreed-ping.jar")
    with zipfile.ZipFile(rebuilt) as new, zipfile.ZipFile(ping_plugin.JAR) as old:
        assert new.read(ping_plugin.COMPILER) == old.read(ping_plugin.COMPILER), "another ecj: rebuild it"
    assert rebuilt.read_bytes() == ping_plugin.JAR.read_bytes()


def test_building_the_plugin_without_ecj_is_one_line_saying_what_to_install(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DogBreedError, match=r"needs the Eclipse compiler \(ecj\) .* apt-get install ecj"):
        ping_plugin.build(Path("/nonexistent/dogbreed-ping.jar"), classpath=Path("/nonexistent"))


def test_a_missing_or_old_java_is_one_line_saying_what_to_install(tmp_path: Path, monkeypatch) -> None:
    old = tmp_path / "java"
    old.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(ReplayError, match=r"needs Java 17 or newer and .*/java is openjdk version \"11"):
        torchserve.check_java()
    old.unlink()
    with pytest.raises(
        ReplayError, match=r"there is no java on PATH or in JAVA_HOME: install it .*openjdk-17-jre-headless"
    ):
        torchserve.check_java()


def test_an_image_without_a_replayed_stack_is_one_line(tmp_path: Path) -> None:
    container = {"Image": "1.dkr.ecr.us-east-1.amazonaws.com/xgboost:1", "ModelDataUrl": "s3://b/m.tar.gz"}
    with (
        pytest.raises(ReplayError, match=r"Image '.*/xgboost:1' has no replayed stack: replay runs the Ray"),
        endpoint_server({"ModelName": "m", "PrimaryContainer": container}, None, tmp_path, free_port()),
    ):
        pass


def test_a_model_the_ray_stack_cannot_serve_is_one_line_naming_why(
    exported_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "opt_ml" / "model"
    shutil.copytree(exported_model, model)
    (model / "config.yaml").write_text("applications: []\n")
    url = "s3://b/model.tar.gz"
    ray_serve.check_contract(model, {}, url)
    ray_serve.check_contract(model, {"DOGBREED_RUNTIME": "eager"}, url)  # on the image's torch
    (model / "config.yaml").unlink()
    with pytest.raises(
        ReplayError, match=r"has no config\.yaml at its root and PrimaryContainer\.Environment"
    ):
        ray_serve.check_contract(model, {}, url)


@pytest.mark.parametrize(
    "image, line, message",
    [
        ("ray:serve-ml-sagemaker-cpu-v1.4", "numpy<2", "the image ray-serve, which has numpy 2.5.2"),
        (
            "pytorch-inference:2.6-cpu-py312",
            "torch<2.6",
            "the image pytorch-inference, which has torch 2.6.0",
        ),
    ],
)
def test_an_archives_requirement_that_conflicts_with_the_images_pins_is_named_before_it_starts(
    image: str,
    line: str,
    message: str,
    exported_model: Path,
    moto: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Both images pip-install code/requirements.txt over what they have: a line their pins do not satisfy
    is one error naming the line and the pin, and no container starts."""
    plain = build_model_tar(exported_model, tmp_path / "plain.tar.gz")
    changed = tmp_path / "model.tar.gz"
    with tarfile.open(plain) as old, tarfile.open(changed, "w:gz") as new:
        for member in old.getmembers():
            content = old.extractfile(member).read() if member.isfile() else None
            if member.name == "code/requirements.txt":
                content += f"{line}\n".encode()
                number = content.decode().count("\n")
                member.size = len(content)
            new.addfile(member, io.BytesIO(content) if content is not None else None)
    s3 = client(moto, "s3")
    s3.upload_file(str(changed), BUCKET, "conflict/model.tar.gz")
    url = f"s3://{BUCKET}/conflict/model.tar.gz"
    create_model = {
        "ModelName": "conflict",
        "PrimaryContainer": {
            "Image": f"763104351884.dkr.ecr.us-east-1.amazonaws.com/{image}",
            "ModelDataUrl": url,
            "Environment": dict(ENDPOINT_ENVIRONMENT),
        },
    }
    expected = f"ModelDataUrl {url} code/requirements.txt line {number} {line!r} conflicts with {message}"
    with (
        pytest.raises(ReplayError, match=re.escape(expected)),
        endpoint_server(create_model, s3, tmp_path / "replay", free_port()),
    ):
        pass
    assert not (tmp_path / "replay" / "container.log").exists()


def test_a_stacks_ports_are_never_the_same_twice() -> None:
    # one at a time, the kernel may hand out the same free port again (Ray's gcs and client server met)
    assert len(set(free_ports(64))) == 64


def test_the_ray_replays_ports_move_and_the_adapters_backend_with_them() -> None:
    first, end = ray_serve.DIRECT_INGRESS_PORTS  # their names
    deployed = {first: "30000", end: "30001"}
    replica = ray_serve.backend_ports(
        {**deployed, "RAYSERVE_BACKEND_URL": "http://127.0.0.1:30000"}, 41000, 42000
    )
    assert replica == {
        "RAYSERVE_BACKEND_URL": "http://127.0.0.1:42000",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": "42000",
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": "42001",
    }
    assert ray_serve.backend_ports({}, 41000, 42000)["RAYSERVE_BACKEND_URL"] == "http://127.0.0.1:41000"
    for elsewhere in ("http://10.0.0.9:8000", "http://127.0.0.1:9000", "https://127.0.0.1:30000"):
        with pytest.raises(ReplayError, match=r"RAYSERVE_BACKEND_URL=.* names neither Ray Serve's proxy"):
            ray_serve.backend_ports({**deployed, "RAYSERVE_BACKEND_URL": elsewhere}, 41000, 42000)


def backend_app() -> Starlette:
    """A stand-in for Ray Serve: echoes what reached it, answers 207 with headers, or is slow."""

    async def root(request: Request) -> Response:
        if request.headers.get("x-amzn-sagemaker-custom-attributes") == "slow":
            await asyncio.sleep(3)
        seen = {
            "headers": dict(request.headers),
            "query": str(request.url.query),
            "body": len(await request.body()),
        }
        return JSONResponse(
            seen, status_code=207, headers={"X-Amzn-SageMaker-Echo": "1", "X-Other": "dropped"}
        )

    async def healthz(request: Request) -> Response:
        return Response("success")

    return Starlette(routes=[Route("/", root, methods=["POST"]), Route("/-/healthz", healthz)])


@contextlib.contextmanager
def adapter(backend: str, **env: str) -> Iterator[str]:
    """The restated port-8080 adapter, run as the stack runs it (the Ray environment's python, -I)."""
    port = free_port()
    python = environment(ray_serve.ENVIRONMENT) / "bin" / "python"
    command = [str(python), "-I", str(ray_serve.HERE / "ray_adapter.py"), str(port)]
    with child(command, env={**CLEAN, "RAYSERVE_BACKEND_URL": backend, **env}):
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{url}/ping", timeout=2)
                break
            time.sleep(0.2)
        yield url


def test_the_restated_adapter_keeps_the_images_rules() -> None:
    with in_process(backend_app()) as backend, adapter(backend, RAYSERVE_BACKEND_TIMEOUT="1") as url:
        bare = httpx.Client()
        del bare.headers["accept"]  # neither Content-Type nor Accept: the adapter's defaults
        answer = bare.post(
            f"{url}/invocations?q=1",
            content=b"abc",
            headers={"X-Amzn-SageMaker-Custom-Attributes": "top_k=2", "Authorization": "x"},
        )
        assert answer.status_code == 207 and answer.headers["x-amzn-sagemaker-echo"] == "1"
        assert "x-other" not in answer.headers
        seen = answer.json()
        assert seen["query"] == "" and seen["body"] == 3 and "authorization" not in seen["headers"]
        assert seen["headers"]["content-type"] == seen["headers"]["accept"] == "application/json"  # defaults
        assert seen["headers"]["x-amzn-sagemaker-custom-attributes"] == "top_k=2"
        assert httpx.get(f"{url}/ping").status_code == 200
        slow = httpx.post(f"{url}/invocations", headers={"X-Amzn-SageMaker-Custom-Attributes": "slow"})
        assert slow.status_code == 504 and slow.json() == {"error": "Request timeout"}
    with adapter(f"http://127.0.0.1:{free_port()}") as url:
        down = httpx.post(f"{url}/invocations", content=b"x")
        assert down.status_code == 503 and down.json() == {"error": "Service unavailable"}
        assert httpx.get(f"{url}/ping").status_code == 503 and httpx.get(f"{url}/ping").text == ""
