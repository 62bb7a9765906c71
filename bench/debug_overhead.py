"""The cost of `debug=on`'s rules and system metrics per training step, against the same loop without them.

    python bench/debug_overhead.py [--batch-size 32] [--image-size 224] [--steps 20] [--repeats 3]

Same model, same in-memory batch, same Lightning loop (see bench/train_loop.py); the only difference is the
debug callbacks (all thirteen rules, the CPU/RSS sampler, the step timer). The profiler is left out: it
records a bounded window of a few steps by design. Goal: ≤ 5 % slower.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import warnings
from pathlib import Path

import torch
from train_loop import fixed_batch, lightning_rate, loop_arguments

from dogbreed.debug import debug_callbacks
from dogbreed.training.config import compose_training


def main() -> None:
    args = loop_arguments(__doc__)
    logging.getLogger("dogbreed").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    debug_cfg = compose_training(["debug=on"]).debug

    batch = fixed_batch(args)
    shape = f"{args.batch_size}×3×{args.image_size}²"
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, batch {shape}")
    print(f"{'mode':<8} {'debug=off img/s':>16} {'debug=on img/s':>15} {'overhead':>9}")
    for freeze in (True, False):
        off, on = [], []
        for repeat in range(args.repeats):
            for debug in (False, True) if repeat % 2 == 0 else (True, False):  # no order bias
                if not debug:
                    off.append(lightning_rate(batch, args.steps, args.warmup, freeze, args.classes))
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    callbacks = debug_callbacks(debug_cfg, Path(tmp))
                    on.append(lightning_rate(batch, args.steps, args.warmup, freeze, args.classes, callbacks))
        o, d = statistics.median(off), statistics.median(on)
        print(f"{'frozen' if freeze else 'full':<8} {o:>16.1f} {d:>15.1f} {(o / d - 1):>9.1%}", flush=True)


if __name__ == "__main__":
    main()
