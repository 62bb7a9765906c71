"""End-to-end serving speed: JPEG bytes in → JSON out, on each stack an endpoint can run on.

    python bench/serve.py [--stack dogbreed,ray] [--requests 200] [--seconds 6] [--image …] [--model DIR]

Stacks: `dogbreed` is `python -m dogbreed.serve`; `ray` is AWS's Ray Serve image as `deploy=default`
replays it (`launch.replay.stacks.ray_serve`: ray start, serve run of the archive's config.yaml, the image's
adapter, the deploy config's Environment), which serves ONNX only (its replay environment has no torch).
For each stack and runtime (eager PyTorch, ONNX Runtime fp32, int8) a server runs in a subprocess; one
client measures batch-1 latency (p50/p99), then 1, 4, 8 and 16 concurrent clients measure throughput. Every
figure is also given as a ratio in the same run: each runtime to eager on dogbreed.serve, and each Ray
runtime to the same runtime on dogbreed.serve (the goal: p50 within 1.2×, throughput at 8 and 16 clients
≥ 0.8×). The model is an untrained 133-class ResNet18 at 224 px (speed does not depend on the weights), or
`--model` a trained one, whose agreement with eager fp32 then means something. Clients share the machine
with the server.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torchvision.models import resnet18

from dogbreed.container import CONF_DIR
from dogbreed.data.classes import dogimages_classes
from dogbreed.data.synthetic import generate_dataset
from dogbreed.processes import child, raise_on_signals
from dogbreed.serving.artifact import safe_extract_tar, write_artifact
from dogbreed.serving.export import describe, export, image_files, load_pixels, quantize_int8
from dogbreed.serving.package import build_model_tar

REPO = Path(__file__).resolve().parent.parent
RUNTIMES = ("eager", "onnx", "int8")
CLIENTS = (1, 4, 8, 16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(conn: http.client.HTTPConnection, body: bytes) -> float:
    start = time.perf_counter()
    conn.request("POST", "/invocations", body, {"Content-Type": "image/jpeg"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return time.perf_counter() - start


def wait_ready(port: int, timeout: float = 120) -> None:
    """Until `/ping` is 200 (a model that never loads is a RuntimeError after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def latency(port: int, body: bytes, n: int) -> tuple[float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(10):
        request(conn, body)
    times = sorted(request(conn, body) for _ in range(n))
    return times[len(times) // 2] * 1000, times[min(n - 1, int(n * 0.99))] * 1000


def throughput(port: int, body: bytes, clients: int, seconds: float) -> float:
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while time.perf_counter() < stop:
            request(conn, body)
            counts[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def make_model(workdir: Path, trained: Path | None, check: Path | None) -> tuple[Path, dict]:
    """The model to serve, exported: a trained `model/` (copied) or an untrained 133-class ResNet18.
    An int8 model that fails export's gate is rebuilt as export chose it, so that its speed is measured
    too (the table says it would not be served)."""
    images = generate_dataset(workdir / "images", classes=8, train_per_class=8, seed=3)
    if trained is not None:
        model_dir = Path(shutil.copytree(trained, workdir / "model"))
    else:
        torch.manual_seed(0)
        classes = dogimages_classes()
        model_dir = write_artifact(resnet18(num_classes=len(classes)), classes, workdir / "model", 224)
    report = export(model_dir, images / "train", check or images / "test")
    for line in describe(report):
        print(line, file=sys.stderr)
    if not (model_dir / "model.int8.onnx").exists():
        calibration = load_pixels(model_dir, image_files(images / "train", 64))
        quantize_int8(model_dir, calibration, report["int8_method"], report["int8_fp32_layers"])
    return model_dir, report


@contextmanager
def dogbreed_serve(model_dir: Path, runtime: str, max_batch_size: int, workdir: Path) -> Iterator[int]:
    """`python -m dogbreed.serve` on a free port; yields the port."""
    port = free_port()
    command = [sys.executable, "-m", "dogbreed.serve", str(model_dir), "--port", str(port), "--log-level"]
    command += ["warning", "--max-batch-size", str(max_batch_size)]
    with child(command, env={**os.environ, "DOGBREED_RUNTIME": runtime}):
        yield port


@contextmanager
def ray_serve(model_dir: Path, runtime: str, max_batch_size: int, workdir: Path) -> Iterator[int]:
    """The model's model.tar.gz on the Ray Serve image's replayed stack, with deploy=default's Environment."""
    if str(REPO) not in sys.path:  # launch/ is the repository's own, not an installed package
        sys.path.insert(0, str(REPO))
    from launch.replay.stacks.ray_serve import ray_serve_container

    tree = workdir / f"ray-{runtime}" / "opt_ml"
    safe_extract_tar(build_model_tar(model_dir, workdir / f"ray-{runtime}.tar.gz"), tree / "model")
    deploy = OmegaConf.load(CONF_DIR / "launch" / "deploy" / "default.yaml")
    environ = {
        **deploy.environment,
        "DOGBREED_RUNTIME": runtime,
        "DOGBREED_SERVE_MAX_BATCH_SIZE": str(max_batch_size),
    }
    with ray_serve_container(tree / "model", environ, "bench", workdir / f"ray-{runtime}.log") as (_, url):
        yield int(url.rsplit(":", 1)[1])


STACKS = {"dogbreed": (dogbreed_serve, RUNTIMES), "ray": (ray_serve, ("onnx", "int8"))}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--image", type=Path, default=REPO / "tests/data/real-dogs/Brittany_02625.jpg")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--model", type=Path, help="a trained model/ (default: an untrained ResNet18)")
    parser.add_argument("--check", type=Path, help="images for export's agreement check (with --model)")
    parser.add_argument("--stack", default="dogbreed,ray", help=f"comma-separated, of {', '.join(STACKS)}")
    args = parser.parse_args()
    stacks = args.stack.split(",")
    if set(stacks) - set(STACKS) or "dogbreed" not in stacks:
        parser.error(f"--stack takes {', '.join(STACKS)} (dogbreed always: the ratios are to it)")
    raise_on_signals()  # a SIGTERM stops the server of the runtime being measured too
    body = args.image.read_bytes()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, report = make_model(Path(tmp), args.model, args.check)
        for stack in stacks:
            start, runtimes = STACKS[stack]
            for runtime in runtimes:
                with start(model_dir, runtime, args.max_batch_size, Path(tmp)) as port:
                    wait_ready(port, timeout=600)
                    p50, p99 = latency(port, body, args.requests)
                    row = {"p50": p50, "p99": p99}
                    for clients in CLIENTS:
                        row[f"c{clients}"] = throughput(port, body, clients, args.seconds)
                    results[f"{stack} {runtime}"] = row
                print(f"{stack} {runtime}: {row}", file=sys.stderr, flush=True)

    print(
        f"image: {args.image.name} ({len(body):,} bytes), {os.cpu_count()} cores, torch {torch.__version__}"
    )
    agreement = {"eager": 1.0, "onnx": report["onnx"], "int8": report["int8"]}
    print(f"top-1 agreement with eager fp32 on {report['check_inputs']} check inputs (gate 99 %):")
    print("  " + ", ".join(f"{runtime} {value:.1%}" for runtime, value in agreement.items()))
    print_table(results)
    eager = results["dogbreed eager"]
    print("ratios to dogbreed.serve eager (latency: eager/x, throughput: x/eager; > 1 is faster)")
    print_table({name: ratio(row, eager) for name, row in results.items() if name.startswith("dogbreed")})
    others = {name: row for name, row in results.items() if not name.startswith("dogbreed")}
    if others:
        print(
            "ratios to dogbreed.serve on the same runtime (goal: p50 ≥ 1/1.2 = 0.83, 8 and 16 clients ≥ 0.8)"
        )
        print_table(
            {name: ratio(row, results[f"dogbreed {name.split()[1]}"]) for name, row in others.items()}
        )


def ratio(row: dict[str, float], base: dict[str, float]) -> dict[str, float]:
    """> 1 is faster: base/x for latencies, x/base for throughputs."""
    return {k: (base[k] / v if k in LATENCY else v / base[k]) for k, v in row.items()}


COLUMNS = {"p50": "p50 ms", "p99": "p99 ms", **{f"c{n}": f"{n} client{'s' * (n > 1)}/s" for n in CLIENTS}}
LATENCY = ("p50", "p99")


def print_table(rows: dict[str, dict[str, float]]) -> None:
    print(f"{'stack runtime':<16}" + "".join(f"{title:>14}" for title in COLUMNS.values()))
    for name, row in rows.items():
        print(f"{name:<16}" + "".join(f"{row[key]:>14.2f}" for key in COLUMNS))


if __name__ == "__main__":
    main()
