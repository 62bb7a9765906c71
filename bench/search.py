"""A 20-trial, 10-epoch search with the feature cache vs without it, on a generated dataset.

    python bench/search.py [--classes 20] [--per-class 100] [--uncached-trials 3] [--uncached-epochs 2]

The cached side is the real `dogbreed.search.study.run_search` (feature extraction included in its time). The
uncached side runs the same trial loop with the same seeds but ResNet18 over every image in every epoch;
that would take hours, so it is measured on the top cached trials for a few epochs and extrapolated to the
epochs the search ran (said in the output). Both sides see the same views (evaluation transform), so their
val_acc must agree; the values and the ranking of those trials under each side are printed.
"""

from __future__ import annotations

import argparse
import io
import logging
import tempfile
import time
import warnings
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from dogbreed.data.features import ComputedFeatures
from dogbreed.data.synthetic import generate_dataset
from dogbreed.hparams import SearchSpace, apply_hparams
from dogbreed.search.head import fit_head
from dogbreed.search.study import run_search, search_model
from dogbreed.training.config import CONF_DIR, compose_training
from dogbreed.training.metric_lines import parse_metrics
from dogbreed.training.run import recalibrate


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
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)

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
        hpo = OmegaConf.merge(
            OmegaConf.load(CONF_DIR / "launch" / "hpo" / "default.yaml"), {"max_jobs": args.trials}
        )

        start = time.perf_counter()
        study = run_search(cached_cfg, hpo, SearchSpace.from_config(hpo.params), tmp / "search")
        cached_seconds = time.perf_counter() - start

        # The uncached side: the same trials, the same loop and seeds, the backbone run on every image.
        dm = instantiate(cached_cfg.data, _convert_="all")
        dm.setup()
        backbone = search_model(cached_cfg, dm.class_names)
        recalibrate(backbone, dm)  # as the cached side did (the demo's AdaBN)
        backbone.eval()
        train_set, valid_set = (
            ComputedFeatures(dm.dataset(s, augment=False), backbone.forward_features, dm.hparams.num_workers)
            for s in ("train", "valid")
        )
        complete = [t for t in study.trials if t.value is not None]
        top = sorted(complete, key=lambda t: t.value, reverse=True)[: args.uncached_trials]
        epoch_seconds, rows = [], []
        for trial in top:
            cfg = apply_hparams(cached_cfg, trial.params)
            cfg.trainer.max_epochs = args.uncached_epochs
            lines = io.StringIO()
            start = time.perf_counter()
            fit_head(cfg, train_set, valid_set, len(dm.class_names), lines, cfg.seed + trial.number)
            epoch_seconds.append((time.perf_counter() - start) / args.uncached_epochs)
            uncached_acc = parse_metrics(lines.getvalue())["val_acc"][-1]
            rows.append((trial.number, trial.intermediate_values[args.uncached_epochs - 1], uncached_acc))

    per_epoch = sum(epoch_seconds) / len(epoch_seconds)
    epochs_run = sum(len(t.intermediate_values) for t in study.trials)  # the same search, same pruning
    uncached_seconds = per_epoch * epochs_run
    print(f"dataset: {args.classes} classes, {n_train} train / {n_valid} valid generated images, 224 px")
    print(f"search: {args.trials} trials × up to {args.epochs} epochs, TPE, median pruning, 2 at a time")
    print(f"cached:   {cached_seconds:8.1f} s measured, feature extraction included")
    print(
        f"uncached: {uncached_seconds:8.1f} s extrapolated: {per_epoch:.1f} s per epoch (mean of "
        f"{len(epoch_seconds)} measured) × the {epochs_run} epochs the same search ran"
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
