"""The cost of `debug=on`'s rules and system metrics per training step, as a share of the step.

    python bench/debug_overhead.py [--batch-size 32] [--image-size 224] [--steps 20] [--repeats 3]

Same model, same in-memory batch, same Lightning loop (see bench/train_loop.py) with the debug callbacks
(all thirteen rules, the CPU/RSS sampler, the stall watch). The profiler is left out: it records a bounded
window of a few steps by design. Goal: the rules cost ≤ 5 % of step time.

Two measurements:
- in the loop (the verdict): every debug hook is timed as it runs, and the CPU time of the threads the
  callbacks start is read from the OS; their sum over the measured steps is divided by the rest of those
  steps' wall time. Numerator and denominator come from the same steps, so a machine that speeds up or slows
  down between runs cannot move the share;
- end to end (a cross-check): images/s with the callbacks against without, interleaved runs. Its noise is
  the run-to-run noise of the machine (±6 % on a shared 2-core VM), larger than what it tries to see.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import psutil
import pytorch_lightning as pl
import torch
from train_loop import StepTimer, fixed_batch, lightning_rate, lightning_run, loop_arguments

from dogbreed.debug import debug_callbacks
from dogbreed.training.config import compose_training

HOOKS = [name for name in vars(pl.Callback) if name.startswith("on_")]


def thread_cpu(threads: list[threading.Thread]) -> dict[int, float]:
    """CPU seconds (user + system) each of `threads` has used so far, by OS thread id."""
    ids = {t.native_id for t in threads}
    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids}


class HookClock(StepTimer):
    """A StepTimer that also times each debug callback's hooks and the CPU its threads use in the window.

    Put it last among the callbacks: its window then opens after the first measured step's start hooks and
    closes after the last step's end hooks, and every hook call in between is counted."""

    def __init__(self, warmup: int, steps: int, callbacks: list[pl.Callback]) -> None:
        super().__init__(warmup)
        self.last = warmup + steps - 1
        self.calls: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.existing = set(threading.enumerate())
        self.threads: list[threading.Thread] = []
        self.cpu_start: dict[int, float] = {}
        self.background_s = 0.0
        for cb in callbacks:
            for hook in HOOKS:
                if getattr(type(cb), hook) is not getattr(pl.Callback, hook):
                    setattr(cb, hook, self.timed(getattr(cb, "name", type(cb).__name__), getattr(cb, hook)))

    def timed(self, name: str, fn: Callable) -> Callable:
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.calls[name].append((start, time.perf_counter()))

        return run

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.threads = [t for t in threading.enumerate() if t not in self.existing]
            self.cpu_start = thread_cpu(self.threads)
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if batch_idx == self.last:
            cpu_end = thread_cpu(self.threads)
            self.background_s = sum(cpu_end[i] - self.cpu_start.get(i, 0.0) for i in cpu_end)

    def per_rule(self) -> dict[str, float]:
        """Seconds each callback's hooks ran inside the window."""
        return {
            name: sum(b - a for a, b in calls if a >= self.start and b <= self.end)
            for name, calls in self.calls.items()
        }


def in_loop(batch, args, freeze: bool, debug_cfg) -> tuple[float, float, dict[str, float]]:
    """(step seconds without the rules, the rules' seconds per step, seconds per step by rule) of one run."""
    with tempfile.TemporaryDirectory() as tmp:
        callbacks = debug_callbacks(debug_cfg, Path(tmp))
        clock = HookClock(args.warmup, args.steps, callbacks)
        lightning_run(batch, args.steps, args.warmup, freeze, args.classes, [*callbacks, clock])
    by_rule = {name: s / args.steps for name, s in clock.per_rule().items()}
    step = (clock.end - clock.start) / args.steps - sum(by_rule.values())  # the hooks ran inside the step
    by_rule["threads (sampler, stall watch)"] = clock.background_s / args.steps
    return step, sum(by_rule.values()), by_rule


def end_to_end(batch, args, freeze: bool, debug_cfg) -> float:
    """Median over interleaved pairs of (img/s without the callbacks) / (img/s with them) - 1."""
    ratios = []
    for repeat in range(args.repeats):
        rates = {}
        for debug in (False, True) if repeat % 2 == 0 else (True, False):  # no order bias
            with tempfile.TemporaryDirectory() as tmp:
                callbacks = debug_callbacks(debug_cfg, Path(tmp)) if debug else []
                rates[debug] = lightning_rate(batch, args.steps, args.warmup, freeze, args.classes, callbacks)
        ratios.append(rates[False] / rates[True] - 1)
    return statistics.median(ratios)


def main() -> None:
    args = loop_arguments(__doc__)
    logging.getLogger("dogbreed").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    debug_cfg = compose_training(["debug=on"]).debug

    batch = fixed_batch(args)
    shape = f"{args.batch_size}×3×{args.image_size}²"
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, batch {shape}, {args.steps} steps")
    print(f"{'mode':<8} {'step ms':>8} {'rules ms':>9} {'in loop':>8} {'end to end':>11}  costliest")
    for freeze in (True, False):
        runs = [in_loop(batch, args, freeze, debug_cfg) for _ in range(args.repeats)]
        step = statistics.median(r[0] for r in runs)
        rules = statistics.median(r[1] for r in runs)
        share = statistics.median(r[1] / r[0] for r in runs)
        by_rule = {name: statistics.median(r[2].get(name, 0.0) for r in runs) for name in runs[0][2]}
        top = sorted(by_rule.items(), key=lambda kv: -kv[1])[:3]
        costliest = ", ".join(f"{name} {s * 1e3:.1f}" for name, s in top)
        e2e = end_to_end(batch, args, freeze, debug_cfg)
        mode = "frozen" if freeze else "full"
        print(
            f"{mode:<8} {step * 1e3:>8.0f} {rules * 1e3:>9.1f} {share:>8.1%} {e2e:>11.1%}  {costliest}",
            flush=True,
        )


if __name__ == "__main__":
    main()
