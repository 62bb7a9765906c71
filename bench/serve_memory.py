"""The memory a served model takes, on the stack that serves it: the resident memory of every process of
the server, idle after start-up and at its peak while answering real photos, for sizing a serverless
endpoint's memory.

    python bench/serve_memory.py [MODEL] [--stack dogbreed,torchserve,ray] [--requests 200]

`dogbreed` is `python -m dogbreed.serve` (and its children). `torchserve` is the PyTorch inference image's
replayed container with deploy=serverless's Environment (one worker): what a serverless endpoint runs,
TorchServe's JVM and its Python worker on the image's torch. `ray` is the Ray Serve image's with
deploy=default's (Ray's daemons, the replica, the image's adapter). A replayed container counts every
process in it, not replay's own session wrapper. Without MODEL, a model is trained for one epoch at 224 px
on a generated set and served as a training job leaves it (eager: no ONNX export); the weights do not
change the footprint, the input size and the runtime do. Prints each stack's figures with its ratio to
dogbreed.serve's in the same run, and the serverless memory step the peak of `torchserve` suggests.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from serve import dogbreed_serve, image_stack, wait_ready  # bench/serve.py: the same stacks

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "tests" / "data" / "real-dogs"
STACKS = {"dogbreed": None, "torchserve": "serverless", "ray": "default"}  # stack → its deploy config
SERVERLESS_MB = range(1024, 6145, 1024)  # the memory sizes a serverless endpoint takes
HEADROOM = 1.25  # over the measured peak: other photos, Python's allocator, the image's own processes
MIB = 1024 * 1024
DOGBREED_BATCH = 16  # dogbreed.serve's default --max-batch-size


def rss(root: psutil.Process, with_root: bool) -> int:
    """Resident bytes of `root`'s descendants (and of `root` itself when `with_root`)."""
    total = 0
    for p in [root, *root.children(recursive=True)] if with_root else root.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # a process that ended meanwhile
            total += p.memory_info().rss
    return total


def train_model(workdir: Path) -> Path:
    from dogbreed.data.synthetic import generate_dataset
    from dogbreed.training.config import compose_training
    from dogbreed.training.run import run

    root = generate_dataset(
        workdir / "data", classes=6, train_per_class=4, valid_per_class=2, test_per_class=2
    )
    overrides = [
        "+experiment=demo",
        f"data.root={root}",
        f"paths.run_dir={workdir / 'run'}",
        "data.num_workers=0",
    ]
    run(compose_training([*overrides, "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]))
    return workdir / "run" / "model"


@contextmanager
def served(stack: str, model: Path, workdir: Path) -> Iterator[tuple[str, psutil.Process, bool]]:
    """`stack` serving `model` while the block runs, healthy: (its URL, the process its processes descend
    from, whether that process counts: a replayed container's leader is replay's own)."""
    if stack == "dogbreed":
        server = dogbreed_serve(model, "auto", DOGBREED_BATCH)
    else:
        server = image_stack(stack, model, "auto", {}, workdir / stack, STACKS[stack])
    with server as (port, process):
        wait_ready(port, process, timeout=600)
        yield f"http://127.0.0.1:{port}", psutil.Process(process.pid), stack == "dogbreed"


def measure(url: str, root: psutil.Process, with_root: bool, requests: int) -> tuple[int, int]:
    """(idle, peak) resident bytes: after start-up, and sampled every 50 ms while answering `requests`
    real photos one after another."""
    from dogbreed.data.images import content_type
    from dogbreed.serving.predict import url_classifier

    idle = rss(root, with_root)
    peak, done = [idle], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(rss(root, with_root))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        classify, photos = url_classifier(url), sorted(PHOTOS.glob("*.jpg"))
        for i in range(requests):
            photo = photos[i % len(photos)]
            classify(photo.read_bytes(), content_type(photo), 5)
    finally:
        done.set()
        sampler.join()
    return idle, max(peak)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?")
    stacks = ", ".join(STACKS)
    parser.add_argument("--stack", default="dogbreed,torchserve", help=f"comma-separated: {stacks}")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    stacks = args.stack.split(",")
    if unknown := [s for s in stacks if s not in STACKS]:
        parser.error(f"unknown stack {', '.join(unknown)}: choose from {', '.join(STACKS)}")
    if "dogbreed" not in stacks:
        stacks.insert(0, "dogbreed")  # the baseline of every ratio
    from dogbreed.processes import raise_on_signals

    raise_on_signals()  # a SIGTERM stops the server being measured too
    results = {}
    with tempfile.TemporaryDirectory(prefix="dogbreed-mem-") as workdir:
        model = Path(args.model) if args.model else train_model(Path(workdir))
        for stack in stacks:
            with served(stack, model, Path(workdir)) as (url, root, with_root):
                results[stack] = measure(url, root, with_root, args.requests)
            idle, peak = results[stack]
            print(f"{stack}: idle {idle / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB", flush=True)
    base_idle, base_peak = results["dogbreed"]
    print(f"{args.requests} requests each; ratios to dogbreed.serve in the same run:")
    for stack, (idle, peak) in results.items():
        print(f"  {stack:<10} idle {idle / base_idle:.2f}×, peak {peak / base_peak:.2f}×")
    if "torchserve" in results:
        need = results["torchserve"][1] * HEADROOM / MIB
        step = next((mb for mb in SERVERLESS_MB if mb >= need), None)
        fits = f"{step} MB" if step else f"none (over {SERVERLESS_MB[-1]} MB)"
        print(f"serverless: peak × {HEADROOM} = {need:.0f} MiB → memory_mb {fits}")


if __name__ == "__main__":
    main()
