"""The memory a served model takes: the RSS of `python -m dogbreed.serve` (and its children), idle after
start-up and at its peak while answering real photos, for sizing a serverless endpoint's memory.

    python bench/serve_memory.py [MODEL] [--requests 200]

Without MODEL, a model is trained for one epoch at 224 px on a generated set (the weights do not change the
footprint; the input size and the runtime do). Prints the numbers and the serverless memory they suggest.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "tests" / "data" / "real-dogs"


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of the process and all its children (a server with workers is all of them)."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a child that ended meanwhile
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--port", type=int, default=8391)
    args = parser.parse_args()
    from dogbreed.data.images import content_type
    from dogbreed.serving.predict import url_classifier, wait_until_ready

    with tempfile.TemporaryDirectory(prefix="dogbreed-mem-") as workdir:
        model = Path(args.model) if args.model else train_model(Path(workdir))
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dogbreed.serve",
                str(model),
                "--port",
                str(args.port),
                "--log-level",
                "warning",
            ],
            cwd=REPO,
        )
        try:
            url = f"http://127.0.0.1:{args.port}"
            wait_until_ready(url, 300)
            process = psutil.Process(server.pid)
            idle = tree_rss(process)
            peak, done = [idle], threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak.append(tree_rss(process))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample)
            sampler.start()
            classify, photos = url_classifier(url), sorted(PHOTOS.glob("*.jpg"))
            for i in range(args.requests):
                photo = photos[i % len(photos)]
                classify(photo.read_bytes(), content_type(photo), 5)
            done.set()
            sampler.join()
        finally:
            server.terminate()
            server.wait(30)
    mib = 1024 * 1024
    print(
        f"dogbreed.serve: idle {idle / mib:.0f} MiB, peak {max(peak) / mib:.0f} MiB, {args.requests} requests"
    )


if __name__ == "__main__":
    main()
