"""End-to-end serving speed: JPEG bytes in → JSON out, through `python -m dogbreed.serve`.

    python bench/serve.py [--requests 200] [--seconds 6] [--image tests/data/real-dogs/Brittany_02625.jpg]

For each runtime (eager PyTorch, ONNX Runtime fp32, ONNX Runtime int8) a server runs in a subprocess;
one client measures batch-1 latency (p50/p99), then 1, 4 and 16 concurrent clients measure throughput.
Every figure is also given as a ratio to eager in the same run. The model is an untrained 133-class
ResNet18 at 224 px (speed does not depend on the weights), or `--model` a trained one, whose agreement
with eager fp32 then means something. Clients share the machine with the server.
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
from pathlib import Path

import torch
from torchvision.models import resnet18

from dogbreed.data.classes import dogimages_classes
from dogbreed.data.synthetic import generate_dataset
from dogbreed.processes import child, raise_on_signals
from dogbreed.serving.artifact import write_artifact
from dogbreed.serving.export import describe, export, image_files, load_pixels, quantize_int8

REPO = Path(__file__).resolve().parent.parent
RUNTIMES = ("eager", "onnx", "int8")


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
    args = parser.parse_args()
    raise_on_signals()  # a SIGTERM stops the server of the runtime being measured too
    body = args.image.read_bytes()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, report = make_model(Path(tmp), args.model, args.check)
        for runtime in RUNTIMES:
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "dogbreed.serve",
                str(model_dir),
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--max-batch-size",
                str(args.max_batch_size),
            ]
            with child(command, env={**os.environ, "DOGBREED_RUNTIME": runtime}):
                wait_ready(port)
                p50, p99 = latency(port, body, args.requests)
                row = {"p50": p50, "p99": p99}
                for clients in (1, 4, 16):
                    row[f"c{clients}"] = throughput(port, body, clients, args.seconds)
                results[runtime] = row
            print(f"{runtime}: {row}", file=sys.stderr, flush=True)

    print(
        f"image: {args.image.name} ({len(body):,} bytes), {os.cpu_count()} cores, torch {torch.__version__}"
    )
    agreement = {"eager": 1.0, "onnx": report["onnx"], "int8": report["int8"]}
    print(f"top-1 agreement with eager fp32 on {report['check_inputs']} check inputs (gate 99 %):")
    print("  " + ", ".join(f"{runtime} {value:.1%}" for runtime, value in agreement.items()))
    print_table(results)
    eager = results["eager"]
    ratios = {
        runtime: {k: (eager[k] / v if k in LATENCY else v / eager[k]) for k, v in row.items()}
        for runtime, row in results.items()
    }
    print("ratios to eager (latency: eager/x, throughput: x/eager; > 1 is faster)")
    print_table(ratios)


COLUMNS = {"p50": "p50 ms", "p99": "p99 ms", "c1": "1 client/s", "c4": "4 clients/s", "c16": "16 clients/s"}
LATENCY = ("p50", "p99")


def print_table(rows: dict[str, dict[str, float]]) -> None:
    print(f"{'runtime':<8}" + "".join(f"{title:>14}" for title in COLUMNS.values()))
    for runtime, row in rows.items():
        print(f"{runtime:<8}" + "".join(f"{row[key]:>14.2f}" for key in COLUMNS))


if __name__ == "__main__":
    main()
