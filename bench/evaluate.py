"""Evaluation images/s over the demo's test split against the training test loop on the same split.

    python bench/evaluate.py [--repeats 3] [--data data/demo]

Both run the same model (the demo's: 10 generated breeds, 224 px, ResNet18; speed does not depend on what it
learned) over the same 60 test images with 2 dataloader workers and batches of 16: `trainer.test` of
Lightning, as a training run tests, and the evaluation's pass (`dogbreed.evaluation.targets.local_target`,
eager, as `python -m dogbreed.evaluate` runs it). Interleaved, medians; the ratio is evaluation / test. The
whole command (pass, metrics, report with its figures and thumbnails) is timed once beside them.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

from dogbreed.data.datamodule import DogBreedDataModule
from dogbreed.data.synthetic import generate_dataset
from dogbreed.evaluation.evaluate import evaluate
from dogbreed.evaluation.targets import local_target
from dogbreed.model import DogBreedClassifier
from dogbreed.serving.artifact import write_artifact


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("data/demo"))
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    if not args.data.exists():
        generate_dataset(args.data, 10, 24, 6, 6, seed=0)  # conf/data/synthetic.yaml
    datamodule = DogBreedDataModule(
        str(args.data), batch_size=16, num_workers=2, url=None, expected_classes=None
    )
    datamodule.setup()
    samples = datamodule.samples["test"]
    model = DogBreedClassifier(datamodule.class_names, pretrained=False)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = write_artifact(
            model.net, model.class_names, Path(tmp) / "model", 224, data={"root": str(args.data)}
        )
        target = local_target(model_dir, "eager", 2, "model")
        test_rates, eval_rates = [], []
        for _ in range(args.repeats):
            trainer = pl.Trainer(
                accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
            )
            started = time.perf_counter()
            trainer.test(model, datamodule=datamodule, verbose=False)
            test_rates.append(len(samples) / (time.perf_counter() - started))
            started = time.perf_counter()
            target.predict(samples)
            eval_rates.append(len(samples) / (time.perf_counter() - started))
        started = time.perf_counter()
        evaluate(str(model_dir), Path(tmp) / "out")
        command = time.perf_counter() - started
    test, ours = statistics.median(test_rates), statistics.median(eval_rates)
    print(f"{len(samples)} test images, medians of {args.repeats}")
    print(f"trainer.test        {test:7.1f} img/s   runs: {', '.join(f'{r:.1f}' for r in test_rates)}")
    print(f"evaluation pass     {ours:7.1f} img/s   runs: {', '.join(f'{r:.1f}' for r in eval_rates)}")
    print(f"ratio evaluation / trainer.test: {ours / test:.2f}")
    print(f"whole evaluate() with metrics and report: {command:.1f} s")


if __name__ == "__main__":
    main()
