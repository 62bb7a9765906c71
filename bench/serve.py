"""End-to-end serving speed: JPEG bytes in → JSON out, on each stack an endpoint can run on.

    python bench/serve.py [--stack dogbreed,ray,torchserve] [--runtime eager,onnx,int8] [--set NAME=VALUE]…
                          [--rounds 3] [--requests 200] [--seconds 6] [--image …] [--model DIR]

Stacks: `dogbreed` is `python -m dogbreed.serve`, the baseline of every ratio. The others are SageMaker
images as their deploy config replays them, with that config's Environment (`--set` overrides it, to tune):
`ray` is AWS's Ray Serve image, deploy=default (`launch.replay.stacks.ray_serve`: ray start, serve run of
the archive's config.yaml, the image's adapter);
`torchserve` is the PyTorch inference image, deploy=torchserve (`launch.replay.stacks.torchserve`).
For each stack and runtime (eager PyTorch, ONNX Runtime fp32, int8) a server runs in a subprocess; one
client measures batch-1 latency (p50/p99), then 1, 4, 8 and 16 concurrent clients measure throughput. Every
figure is also given as a ratio in the same run: each runtime to eager on dogbreed.serve, and each image
stack's runtime to the same runtime on dogbreed.serve. A machine's speed drifts within minutes (shared
hosts), so every server is started and measured `--rounds` times in turn, each ratio is taken within a
round, and the tables show medians (the verdicts also each round's ratio); the last lines are a verdict
per goal (p50 within 1.2×, throughput at 8 and 16 clients ≥ 0.8×), naming the default endpoint: `ray`
on the runtime deploy=default serves this model (int8 when export's gate keeps it, else ONNX), and `ray
eager`, what it serves for a training job's model (its archive has no ONNX export). The model
is an untrained 133-class ResNet18 at 224 px (speed does not depend on the weights), or `--model` a
trained one, whose agreement with eager fp32 then means something. Clients share the machine with the servers.
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import importlib.util
import os
import shutil
import statistics
import subprocess
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


def request(conn: http.client.HTTPConnection, body: bytes) -> float:
    start = time.perf_counter()
    conn.request("POST", "/invocations", body, {"Content-Type": "image/jpeg"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return time.perf_counter() - start


def wait_ready(port: int, server: subprocess.Popen, timeout: float = 120) -> None:
    """Until `/ping` is 200 (a server that exits, or a model that never loads in `timeout`, is a
    RuntimeError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}) before /ping was healthy")
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
    report["int8_kept"] = (model_dir / "model.int8.onnx").exists()
    if not report["int8_kept"]:
        calibration = load_pixels(model_dir, image_files(images / "train", 64))
        quantize_int8(model_dir, calibration, report["int8_method"], report["int8_fp32_layers"])
    return model_dir, report


@contextmanager
def dogbreed_serve(
    model_dir: Path, runtime: str, max_batch_size: int
) -> Iterator[tuple[int, subprocess.Popen]]:
    """`python -m dogbreed.serve` on a free port; yields (the port, the server)."""
    on_path()
    from launch.replay.stacks import free_port

    port = free_port()
    command = [sys.executable, "-m", "dogbreed.serve", str(model_dir), "--port", str(port), "--log-level"]
    command += ["warning", "--max-batch-size", str(max_batch_size)]
    with child(command, env={**os.environ, "DOGBREED_RUNTIME": runtime}) as server:
        yield port, server


# stack → (the deploy config it is measured with, its replay module in launch/replay/stacks/); `dogbreed` is
# dogbreed.serve, the baseline of every ratio
IMAGE_STACKS = {"ray": ("default", "ray_serve"), "torchserve": ("torchserve", "torchserve")}
STACKS = ("dogbreed", *IMAGE_STACKS)
DEFAULT_STACK = "ray"  # what deploy=default serves on, the one the goals are about
GOALS = {
    "p50": ("p50 within 1.2×", 1 / 1.2),
    "c8": ("8 clients ≥ 0.8×", 0.8),
    "c16": ("16 clients ≥ 0.8×", 0.8),
}


def on_path() -> None:
    """The repository on sys.path: launch/ is the repository's own, not an installed package."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def stack_module(stack: str) -> str:
    """`launch.replay.stacks.<module>`, importable."""
    on_path()
    return f"launch.replay.stacks.{IMAGE_STACKS[stack][1]}"


@contextmanager
def image_stack(
    stack: str,
    model_dir: Path,
    runtime: str,
    settings: dict[str, str],
    workdir: Path,
    deploy: str | None = None,
) -> Iterator[tuple[int, subprocess.Popen]]:
    """The model's model.tar.gz on a SageMaker image's replayed stack (`<module>_container` of its replay
    module), with the Environment of `deploy` (default: the stack's own deploy config), then `settings`
    (bench's `--set`) over it."""
    default, module = IMAGE_STACKS[stack]
    deploy = deploy or default
    container = getattr(importlib.import_module(stack_module(stack)), f"{module}_container")
    tree = workdir / f"{module}-{runtime}" / "opt_ml"
    safe_extract_tar(build_model_tar(model_dir, workdir / f"{module}-{runtime}.tar.gz"), tree / "model")
    from launch.commands.deploy import container_environment  # importable once stack_module ran

    # what deploy= sends (the contract's variables, the image's, the deploy config's), then the runtime's
    deployed = container_environment(OmegaConf.load(CONF_DIR / "launch" / "deploy" / f"{deploy}.yaml"))
    environ = {**deployed, "DOGBREED_RUNTIME": runtime, **settings}
    with container(tree / "model", environ, "bench", workdir / f"{module}-{runtime}.log") as (leader, url):
        yield int(url.rsplit(":", 1)[1]), leader


def measure(
    port: int, server: subprocess.Popen, body: bytes, requests: int, seconds: float
) -> dict[str, float]:
    """p50/p99 of batch-1 requests, then throughput (img/s) at each number of clients."""
    wait_ready(port, server, timeout=600)
    p50, p99 = latency(port, body, requests)
    return {"p50": p50, "p99": p99, **{f"c{n}": throughput(port, body, n, seconds) for n in CLIENTS}}


def parse_settings(pairs: list[str]) -> dict[str, str]:
    """`--set NAME=VALUE` pairs as an Environment (a pair without `=` is an error)."""
    settings = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    if len(settings) != len(pairs):
        raise ValueError(f"--set takes NAME=VALUE, got {[p for p in pairs if '=' not in p]}")
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="times each server is started and measured")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--image", type=Path, default=REPO / "tests/data/real-dogs/Brittany_02625.jpg")
    parser.add_argument("--max-batch-size", type=int, default=16, help="dogbreed.serve's")
    parser.add_argument("--model", type=Path, help="a trained model/ (default: an untrained ResNet18)")
    parser.add_argument("--check", type=Path, help="images for export's agreement check (with --model)")
    parser.add_argument("--stack", default="dogbreed,ray", help=f"comma-separated, of {', '.join(STACKS)}")
    parser.add_argument("--runtime", default=",".join(RUNTIMES), help="comma-separated runtimes to measure")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an Environment variable for the image stacks, over the deploy config's (repeatable)",
    )
    args = parser.parse_args()
    stacks, runtimes = args.stack.split(","), args.runtime.split(",")
    if set(stacks) - set(STACKS) or "dogbreed" not in stacks or set(runtimes) - set(RUNTIMES):
        parser.error(
            f"--stack takes {', '.join(STACKS)} (dogbreed always: the ratios are to it), "
            f"--runtime {', '.join(RUNTIMES)}"
        )
    for stack in stacks[1:]:
        if importlib.util.find_spec(stack_module(stack)) is None:
            sys.exit(f"--stack {stack}: {stack_module(stack)} is not in this tree yet")
    settings = parse_settings(args.set)
    if args.rounds < 1:
        parser.error("--rounds takes a positive number")
    raise_on_signals()  # a SIGTERM stops the server of the runtime being measured too
    body = args.image.read_bytes()
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, report = make_model(Path(tmp), args.model, args.check)
        for number in range(1, args.rounds + 1):
            results: dict[str, dict[str, float]] = {}
            for stack in stacks:
                for runtime in runtimes:
                    if stack == "dogbreed":
                        server = dogbreed_serve(model_dir, runtime, args.max_batch_size)
                    else:
                        server = image_stack(stack, model_dir, runtime, settings, Path(tmp) / str(number))
                    with server as (port, process):
                        results[f"{stack} {runtime}"] = measure(
                            port, process, body, args.requests, args.seconds
                        )
                    row = {k: round(v, 2) for k, v in results[f"{stack} {runtime}"].items()}
                    print(f"round {number}, {stack} {runtime}: {row}", file=sys.stderr, flush=True)
            rounds.append(results)

    print(
        f"image: {args.image.name} ({len(body):,} bytes), {os.cpu_count()} cores, torch {torch.__version__}, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
        + (f", --set {' '.join(args.set)}" if args.set else "")
        + f"; medians of {args.rounds} rounds"
    )
    agreement = {"eager": 1.0, "onnx": report["onnx"], "int8": report["int8"]}
    print(f"top-1 agreement with eager fp32 on {report['check_inputs']} check inputs (gate 99 %):")
    print("  " + ", ".join(f"{runtime} {value:.1%}" for runtime, value in agreement.items()))
    print_table(median_rows(rounds))
    if "dogbreed eager" in rounds[0]:
        print("ratios to dogbreed.serve eager (latency: eager/x, throughput: x/eager; > 1 is faster)")
        print_table(
            median_rows(
                [
                    {name: ratio(row, results["dogbreed eager"]) for name, row in results.items()}
                    for results in rounds
                ],
                "dogbreed",
            )
        )
    per_round = [
        {
            name: ratio(row, results[f"dogbreed {name.split()[1]}"])
            for name, row in results.items()
            if not name.startswith("dogbreed") and f"dogbreed {name.split()[1]}" in results
        }
        for results in rounds
    ]
    others = median_rows(per_round)
    if others:
        print(
            "ratios to dogbreed.serve on the same runtime (goal: p50 ≥ 1/1.2 = 0.83, 8 and 16 clients ≥ 0.8)"
        )
        print_table(others)
    defaults = {
        f"{DEFAULT_STACK} {'int8' if report['int8_kept'] else 'onnx'}": "as deploy=default serves this model",
        f"{DEFAULT_STACK} eager": "as deploy=default serves a training job's model, which has no ONNX export",
    }
    for name, row in others.items():
        default = f" (the default endpoint, {defaults[name]})" if name in defaults else ""
        for key, (goal, bound) in GOALS.items():
            verdict = "met" if row[key] >= bound else "NOT MET"
            each = ", ".join(f"{r[name][key]:.2f}" for r in per_round)
            print(
                f"goal {goal}, {name}{default}: median ratio {row[key]:.2f} (rounds: {each}; needs "
                f"≥ {bound:.2f}): {verdict}"
            )


def median_rows(rounds: list[dict[str, dict[str, float]]], prefix: str = "") -> dict[str, dict[str, float]]:
    """Each row's figures, the median over rounds (rows whose name starts with `prefix`)."""
    return {
        name: {key: statistics.median(r[name][key] for r in rounds) for key in row}
        for name, row in rounds[0].items()
        if name.startswith(prefix)
    }


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
