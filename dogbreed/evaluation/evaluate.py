"""One split end to end: samples → a target's probabilities → metrics.json, predictions.csv, the report.

`evaluate` is the command's body; `after_training` is what every training run does after its test: fit the
served temperature and threshold on the validation split, then evaluate the test split into
`<run dir>/evaluation/`. Everything is written into a temporary folder that replaces `evaluation/` only
when complete.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from dogbreed.atomic import atomic_dir
from dogbreed.data.classes import breed_name
from dogbreed.data.datamodule import Sample, class_mismatch, image_problem, scan_split
from dogbreed.data.synthetic import generate_dataset
from dogbreed.errors import DatasetError, DogBreedError
from dogbreed.evaluation import calibration, metrics
from dogbreed.evaluation.report import Outcome, write_report
from dogbreed.evaluation.targets import Target, local_target, open_target, sha256, split_runtime
from dogbreed.serving.artifact import CONFIG, resolve_model

log = logging.getLogger(__name__)

FOLDER = "evaluation"
TOP = 5
CONFUSED_PAIRS = 10  # in metrics.json


def read_config(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / CONFIG).read_text(encoding="utf-8"))


def model_folder(path: Path) -> Path:
    """A run dir stands for its `model/`; anything else is MODEL as serving takes it."""
    return path / "model" if (path / "model" / CONFIG).is_file() else path


def readable(files: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files that decode, and (file, why) for those that do not: named and skipped, as in training."""
    with ThreadPoolExecutor(4) as pool:
        problems = list(pool.map(image_problem, files))
    bad = [(f, why) for f, why in zip(files, problems, strict=True) if why]
    for path, why in bad:
        log.warning("skipping unreadable image %s: %s", path, why)
    return [f for f, why in zip(files, problems, strict=True) if not why], bad


def load_split(folder: Path, classes: list[str]) -> tuple[list[Sample], list[tuple[Path, str]]]:
    """(file, model class index) of a split whose class folders must be the model's."""
    if not folder.is_dir():
        raise DatasetError(f"split folder {folder} does not exist (--data ROOT holds train/ valid/ test/)")
    found, samples = scan_split(folder)
    mismatch = class_mismatch({"the model": classes, str(folder): found})
    if mismatch:
        raise DatasetError(f"the classes of {folder} differ from the model's: {mismatch}")
    if not samples:
        raise DatasetError(f"{folder} holds no images")
    good, bad = readable([f for f, _ in samples])
    keep = set(good)
    return [(f, classes.index(found[i])) for f, i in samples if f in keep], bad


def unseen_files(folder: Path) -> list[Sample]:
    """Every readable image under `folder`, of classes the model never saw (label -1)."""
    files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
    return [(f, -1) for f in readable(files)[0]]


def measure(
    target: Target, samples: list[Sample], threshold: float, temperature: float
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(served probabilities, raw ones, the headline metrics both ways) of `target` over `samples`."""
    labels = np.array([label for _, label in samples])
    started = time.perf_counter()
    probs = target.predict(samples)
    seconds = time.perf_counter() - started
    raw = calibration.rescale(probs, temperature)
    numbers = metrics.summary(probs, labels)
    numbers.update(
        ece_raw=metrics.ece(raw, labels),
        nll_raw=metrics.nll(raw, labels),
        not_confident=metrics.not_confident(probs, threshold),
        images_per_s=len(samples) / seconds,
        seconds=seconds,
    )
    return probs, raw, numbers


def evaluate(
    model: str,
    out: Path,
    split: str = "test",
    data: Path | None = None,
    target_spec: str | None = None,
    against: str | None = None,
    unseen: Path | None = None,
    workers: int = 2,
    wait: float = 0.0,
    region: str | None = None,
) -> Outcome:
    """Evaluate `target_spec` (default: MODEL itself) on MODEL's `split`, write `<out>/evaluation/`.

    MODEL supplies the classes, the data root (unless `data`), the temperature and threshold it serves
    with, and its identity. Any problem raises a `DogBreedError` before anything is written."""
    with tempfile.TemporaryDirectory(prefix="dogbreed-evaluate-") as workdir:
        resolve = resolver(Path(workdir))
        model_dir = resolve(split_runtime(model)[0])
        config = read_config(model_dir)
        classes = json.loads((model_dir / "classes.json").read_text(encoding="utf-8"))
        root = data or Path((config.get("data") or {}).get("root") or "")
        if not str(root):
            raise DogBreedError(f"{model_dir} does not record its data root: give --data ROOT")
        samples, skipped = load_split(Path(root) / split, classes)
        open_ = lambda spec: open_target(spec, resolve, classes, workers, wait, region)  # noqa: E731
        target = open_(target_spec or model)
        other = open_(against) if against else None
        outcome = run(config, classes, split, samples, skipped, target, other, unseen)
        outcome.metrics["model"] = {"path": str(model), **identity(model_dir, classes)}
        outcome.metrics["data"] = str(Path(root) / split)
        with atomic_dir(out / FOLDER) as tmp:
            write_files(outcome, tmp)
            write_report(outcome, tmp)
    return outcome


def resolver(workdir: Path) -> Callable[[str], Path]:
    """MODEL → model/ folder, each archive or checkpoint into its own folder under `workdir`."""
    count = itertools.count()

    def resolve(spec: str) -> Path:
        path = model_folder(Path(spec))
        return path if path.is_dir() else resolve_model(path, workdir / f"model-{next(count)}")

    return resolve


def identity(model_dir: Path, classes: list[str]) -> dict[str, Any]:
    return {"weights_sha256": sha256(model_dir / "model.pt"), "num_classes": len(classes), "classes": classes}


def run(
    config: dict[str, Any],
    classes: list[str],
    split: str,
    samples: list[Sample],
    skipped: list[tuple[Path, str]],
    target: Target,
    other: Target | None,
    unseen: Path | None,
) -> Outcome:
    """Measure `target` (and `other`, and the unseen images) over `samples` with MODEL's calibration."""
    served = config.get("calibration") or {}
    temperature = float(served.get("temperature", 1.0))
    threshold = float(served.get("confidence_threshold", 0.0))
    probs, raw, numbers = measure(target, samples, threshold, temperature)
    labels = np.array([y for _, y in samples])
    numbers = {
        "split": split,
        "images": len(samples),
        "skipped": [{"file": str(f), "why": why} for f, why in skipped],
        **numbers,
        "temperature": temperature,
        "confidence_threshold": threshold,
        "confused_pairs": [
            {"classes": [classes[a], classes[b]], "a_as_b": ab, "b_as_a": ba}
            for a, b, ab, ba in metrics.confused_pairs(probs, labels)[:CONFUSED_PAIRS]
        ],
        "target": {"name": target.name, **target.identity},
        "runtime": target.runtime,
    }
    outcome = Outcome(split, classes, samples, labels, probs, raw, target, numbers)
    if other is not None:
        other_probs, _, other_numbers = measure(other, samples, threshold, temperature)
        numbers["against"] = {
            "name": other.name,
            "runtime": other.runtime,
            **other.identity,
            "top1": other_numbers["top1"],
            "top1_agreement": metrics.agreement(probs, other_probs),
            "top1_delta": numbers["top1"] - other_numbers["top1"],
            "differing_images": int((probs.argmax(1) != other_probs.argmax(1)).sum()),
        }
        outcome.other, outcome.other_probs = other, other_probs
    if unseen is not None:
        unseen_samples = unseen_files(unseen)
        if not unseen_samples:
            raise DatasetError(f"--unseen {unseen} holds no readable images")
        outcome.unseen_probs = target.predict(unseen_samples)
        numbers["unseen"] = {
            "folder": str(unseen),
            "images": len(unseen_samples),
            "not_confident": metrics.not_confident(outcome.unseen_probs, threshold),
            "auroc": metrics.separation(probs, outcome.unseen_probs),
        }
    return outcome


def write_files(outcome: Outcome, folder: Path) -> None:
    """metrics.json and predictions.csv (file, true breed, top-5 breeds and their probabilities)."""
    (folder / "metrics.json").write_text(json.dumps(outcome.metrics, indent=2), encoding="utf-8")
    k = min(TOP, len(outcome.classes))
    header = ["file", "true_breed", "confident"]
    header += [f"{what}_{rank}" for rank in range(1, k + 1) for what in ("breed", "probability")]
    threshold = outcome.metrics["confidence_threshold"]
    with (folder / "predictions.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for (path, label), row in zip(outcome.samples, outcome.probs, strict=True):
            best = np.argsort(-row, kind="stable")[:k]
            cells = [str(path), breed_name(outcome.classes[label]), bool(row[best[0]] >= threshold)]
            for i in best:
                cells += [breed_name(outcome.classes[i]), f"{row[i]:.6f}"]
            writer.writerow(cells)


UNSEEN_CLASSES = 6  # generated classes a model trained on generated data never saw


def after_training(
    model_dir: Path,
    run_dir: Path,
    samples: dict[str, list[Sample]],
    fit: bool,
    precision: float | None,
    workers: int,
    synthetic: dict[str, Any] | None = None,
) -> Outcome:
    """Fit the calibration on the validation split into `model_dir`, then evaluate the test split into
    `<run_dir>/evaluation/` (one batched pass each, eager: the weights that scored test_acc). A run on
    generated data also measures classes it never saw, generated after its own."""
    classes = json.loads((model_dir / "classes.json").read_text(encoding="utf-8"))
    target = local_target(model_dir, "eager", workers, "model", logits=True)
    valid = samples["valid"]
    fitted = calibration.calibrate(target.predict(valid), np.array([y for _, y in valid]), fit, precision)
    calibration.store(model_dir, fitted)
    target = local_target(model_dir, "eager", workers, "model")  # serving the calibration now
    with tempfile.TemporaryDirectory(prefix="dogbreed-unseen-") as tmp:
        unseen = None
        if synthetic:
            first = int(synthetic.get("classes", len(classes)))
            per_class = int(synthetic.get("test_per_class") or 6)
            unseen = (
                generate_dataset(
                    Path(tmp) / "unseen",
                    min(UNSEEN_CLASSES, 133 - first),
                    train_per_class=1,
                    valid_per_class=1,
                    test_per_class=per_class,
                    seed=int(synthetic.get("seed", 0)),
                    first_class=first,
                )
                / "test"
            )
        outcome = run(read_config(model_dir), classes, "test", samples["test"], [], target, None, unseen)
        if unseen is not None:  # the folder is gone with this function: say what it held
            outcome.metrics["unseen"]["folder"] = f"generated breeds {first + 1}+ (the model knows {first})"
        outcome.metrics["model"] = {"path": str(model_dir), **identity(model_dir, classes)}
        with atomic_dir(run_dir / FOLDER) as folder:
            write_files(outcome, folder)
            write_report(outcome, folder)
    return outcome
