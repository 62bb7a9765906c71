"""The demo's test accuracy over seeds: `+experiment=demo` as `make demo` trains it, seed by seed.

    python bench/demo_accuracy.py [--seeds 0 1 2 3 4] [overrides ...]

Each seed changes the random backbone, the head's initialisation and the batch order; the data (data/demo,
generated once) stays. Prints test accuracy per seed, the minimum and the mean, and chance.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import tempfile
import warnings

from dogbreed.training.config import compose_training
from dogbreed.training.run import run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("overrides", nargs="*", help="training overrides, e.g. model.bn_recalibration=false")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    accuracies = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            cfg = compose_training(
                [
                    "+experiment=demo",
                    f"seed={seed}",
                    f"paths.run_dir={tmp}/{seed}",
                    "trainer.enable_progress_bar=false",
                    "trainer.enable_model_summary=false",
                    *args.overrides,
                ]
            )
            with contextlib.redirect_stdout(io.StringIO()):
                result = run(cfg)
            accuracies.append(result.metrics["test_acc"])
            print(f"seed {seed}: test_acc {accuracies[-1]:.3f}", flush=True)
    classes = cfg.data.synthetic.classes
    print(
        f"min {min(accuracies):.3f}  mean {sum(accuracies) / len(accuracies):.3f}  chance {1 / classes:.3f}"
    )


if __name__ == "__main__":
    main()
