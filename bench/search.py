"""A 20-trial, 10-epoch search with the feature cache vs without it, on a generated dataset.

    python bench/search.py [--classes 20] [--per-class 100] [--uncached-trials 3] [--uncached-epochs 2]

The cached side is the real `dogbreed.search.study.run_search` (feature extraction included in its time). The
uncached side is what the same search does with `data.cache_features=false`: every trial is a training run
on images (`dogbreed.training.run.run`: set-up, ResNet18 over every image in every epoch, then the test split
and the model artifact). That would take hours, so the top cached trials are run that way for a few epochs,
one at a time, their set-up, epochs and end timed apart, and extrapolated to the trials, completions and
epochs the cached search had (said in the output). Both sides see the evaluation view; the uncached run
draws its head and batch order from the run's seed, a cached trial from seed + its number, so their val_acc
are printed side by side, not expected equal (tests/test_search.py shows that the two loops, given the same
start, train the same bits).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna
import pytorch_lightning as pl
from omegaconf import OmegaConf

from dogbreed.data.synthetic import generate_dataset
from dogbreed.hparams import SearchSpace, apply_hparams
from dogbreed.search.study import run_search
from dogbreed.training.config import CONF_DIR, compose_training
from dogbreed.training.metric_lines import parse_metrics
from dogbreed.training.run import run


class EpochTimes(pl.Callback):
    """When each training epoch (its validation included) starts and ends."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.ends.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=100, help="training images per class")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--uncached-trials", type=int, default=3)
    parser.add_argument("--uncached-epochs", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning_fabric"):  # per-run chatter ("Seed set to 42")
        logging.getLogger(name).setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = generate_dataset(tmp / "data", args.classes, args.per_class, seed=5)
        n_train, n_valid = args.classes * args.per_class, args.classes * max(1, args.per_class // 4)
        common = [
            "+experiment=demo",
            f"data.root={root}",
            f"data.cache_dir={tmp / 'cache'}",
            "data.augment=false",  # both sides see the evaluation view
            f"trainer.max_epochs={args.epochs}",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
        ]
        cached_cfg = compose_training([*common, "data.cache_features=true", f"paths.run_dir={tmp / 'c'}"])
        uncached_cfg = compose_training([*common, "data.cache_features=false"])
        hpo = OmegaConf.merge(
            OmegaConf.load(CONF_DIR / "launch" / "hpo" / "default.yaml"), {"max_jobs": args.trials}
        )

        start = time.perf_counter()
        study = run_search(cached_cfg, hpo, SearchSpace.from_config(hpo.params), tmp / "search")
        cached_seconds = time.perf_counter() - start

        # The uncached side: the top trials as the search runs them with the cache off, for fewer epochs.
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        top = sorted(complete, key=lambda t: t.value, reverse=True)[: args.uncached_trials]
        setups, epochs, ends, rows = [], [], [], []
        for trial in top:
            cfg = apply_hparams(uncached_cfg, trial.params)
            cfg.trainer.max_epochs = args.uncached_epochs
            cfg.paths.run_dir = str(tmp / "uncached" / f"trial_{trial.number:03d}")
            lines, times = io.StringIO(), EpochTimes()
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the run's own report lines
                run(cfg, extra_callbacks=[times], lines=lines)
            stop = time.perf_counter()
            setups.append(times.starts[0] - start)
            epochs += [end - begin for begin, end in zip(times.starts, times.ends, strict=True)]
            ends.append(stop - times.ends[-1])
            uncached_acc = parse_metrics(lines.getvalue())["val_acc"][-1]
            rows.append((trial.number, trial.intermediate_values[args.uncached_epochs - 1], uncached_acc))

    per_setup, per_epoch, per_end = (statistics.mean(x) for x in (setups, epochs, ends))
    epochs_run = sum(len(t.intermediate_values) for t in study.trials)  # the same search, same pruning
    # a pruned trial stops inside fit: it pays the set-up and its epochs, not the test and the artifact
    uncached_seconds = len(study.trials) * per_setup + epochs_run * per_epoch + len(complete) * per_end
    print(f"dataset: {args.classes} classes, {n_train} train / {n_valid} valid generated images, 224 px")
    print(f"search: {args.trials} trials × up to {args.epochs} epochs, TPE, median pruning, 2 at a time")
    print(f"cached:   {cached_seconds:8.1f} s measured, feature extraction included")
    print(
        f"uncached: {uncached_seconds:8.1f} s extrapolated from {len(top)} trials run one at a time: "
        f"{per_setup:.1f} s set-up × {len(study.trials)} trials + {per_epoch:.1f} s per epoch × the "
        f"{epochs_run} epochs the same search ran + {per_end:.1f} s test and artifact × {len(complete)} "
        "complete trials"
    )
    print(f"speed-up: {uncached_seconds / cached_seconds:.0f}×")
    print(
        f"  the whole cached search costs {cached_seconds / per_epoch:.2f} uncached epochs, so the speed-up "
        "follows the epochs the search runs (pruning varies with 2 trials in parallel)"
    )
    print(f"top {len(rows)} cached trials, val_acc after epoch {args.uncached_epochs - 1}:")
    print("  trial  cached  uncached")
    for number, cached_acc, uncached_acc in rows:
        print(f"  {number:5d}  {cached_acc:.4f}  {uncached_acc:.4f}")

    def ranking(column: int) -> list[int]:
        return [r[0] for r in sorted(rows, key=lambda r: -r[column])]

    print(f"same ranking of these trials: {ranking(1) == ranking(2)}")


if __name__ == "__main__":
    main()
