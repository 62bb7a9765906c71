"""A folder of photos: `dogbreed.predict MODEL FOLDER --out` (batched) against one image per call.

    python bench/predict.py [--images 96] [--repeats 3] [--batch-size 32] [--workers 2]

The same model (an untrained 133-class ResNet18 at 224 px: speed does not depend on the weights) over the
same photos: the repository's real dog JPEGs (tests/data/real-dogs), copied to `--images` files.
Batched is `dogbreed.serving.batch.predict_folder` as `--out` runs it (decoded in DataLoader workers,
batches of `--batch-size`); one by one is what `python -m dogbreed.predict MODEL IMAGE...` does per image
(`local_classifier`: read, decode, one model run), as a naive loop would. Both in this process after one
warm-up, interleaved, medians; the ratio is batched / one by one, of the medians and run by run. The
whole command (process start, model load, progress bar, predictions.csv) is timed once beside them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models import resnet18

from dogbreed.data.classes import dogimages_classes
from dogbreed.data.images import content_type
from dogbreed.serving.artifact import write_artifact
from dogbreed.serving.batch import images_in, predict_folder
from dogbreed.serving.predict import local_classifier
from dogbreed.serving.service import Service

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "tests" / "data" / "real-dogs"


def photo_folder(folder: Path, count: int) -> list[Path]:
    """`count` JPEGs, the real photos over and over under new names."""
    real = [p for p in images_in(PHOTOS) if p.suffix == ".jpg"]
    folder.mkdir()
    for i in range(count):
        shutil.copy(real[i % len(real)], folder / f"{i:05d}_{real[i % len(real)].name}")
    return images_in(folder)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        classes = dogimages_classes()
        model_dir = write_artifact(resnet18(num_classes=len(classes)), classes, Path(tmp) / "model", 224)
        paths = photo_folder(Path(tmp) / "photos", args.images)
        service = Service(model_dir)
        classify = local_classifier(str(model_dir), Path(tmp) / "work")
        service.warm_up()
        classify(paths[0].read_bytes(), content_type(paths[0]), 5)
        batched_rates, single_rates = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            done = list(predict_folder(service, paths, args.batch_size, args.workers))
            batched_rates.append(len(done) / (time.perf_counter() - started))
            started = time.perf_counter()
            for path in paths:
                classify(path.read_bytes(), content_type(path), 5)
            single_rates.append(len(paths) / (time.perf_counter() - started))
        command = [sys.executable, "-m", "dogbreed.predict", str(model_dir), str(Path(tmp) / "photos")]
        command += ["--out", str(Path(tmp) / "predictions.csv"), "--batch-size", str(args.batch_size)]
        command += ["--workers", str(args.workers)]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        whole = time.perf_counter() - started
    batched, single = statistics.median(batched_rates), statistics.median(single_rates)
    print(
        f"{len(paths)} photos, medians of {args.repeats}, {os.cpu_count()} cores, torch {torch.__version__}"
    )
    for name, rate, runs in (
        (f"batched ({args.workers} workers, batches of {args.batch_size})", batched, batched_rates),
        ("one image per call", single, single_rates),
    ):
        print(f"{name:<40}{rate:7.1f} img/s   runs: {', '.join(f'{r:.1f}' for r in runs)}")
    pairs = ", ".join(f"{b / s:.2f}" for b, s in zip(batched_rates, single_rates, strict=True))
    print(f"ratio batched / one by one: {batched / single:.2f} (of the medians; run by run: {pairs})")
    print(
        f"whole command (start, model load, predictions.csv): {whole:.1f} s, {len(paths) / whole:.1f} img/s"
    )


if __name__ == "__main__":
    main()
