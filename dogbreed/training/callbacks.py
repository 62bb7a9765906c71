"""Lightning callbacks of the training entry point."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import psutil
import pytorch_lightning as pl

from dogbreed.training.metric_lines import epoch_line, test_line

log = logging.getLogger(__name__)


class RankSummary(pl.Callback):
    """Logs how many training batches this process saw: under DDP each rank sees its own shard."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.batches = self.samples = 0
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1
        self.samples += len(batch[1])

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self.started
        log.info(
            "rank %d of %d saw %d training batches (%d samples) in %.1f s",
            trainer.global_rank,
            trainer.world_size,
            self.batches,
            self.samples,
            seconds,
        )


class MetricLines(pl.Callback):
    """Prints the documented metric lines (rank 0 only) that tuning jobs and tests parse."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream  # None: whatever sys.stdout is when a line is printed

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        line = epoch_line(trainer.current_epoch, float(m["val/loss"]), float(m["val/acc"]))
        print(line, file=self.stream or sys.stdout, flush=True)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            m = trainer.callback_metrics
            print(
                test_line(float(m["test/loss"]), float(m["test/acc"])),
                file=self.stream or sys.stdout,
                flush=True,
            )


class StartupTimer(pl.Callback):
    """Where the time before the first training step goes: the process start (interpreter, imports, config)
    up to `run`, the phases `run` names, and Lightning's own start (workers, hooks) until the first batch.
    Logged once and written to `<run dir>/startup.json` (bench/startup.py reads it)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.phases = {"process start to run()": time.time() - psutil.Process().create_time()}
        self.mark = time.perf_counter()
        self.done = False

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.phases[name] = time.perf_counter() - started
        self.mark = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.done or not trainer.is_global_zero:
            return
        self.done = True
        self.phases["Lightning until the first batch"] = time.perf_counter() - self.mark
        total = sum(self.phases.values())
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.phases.items())
        log.info("start-up: %.1f s to the first training step (%s)", total, parts)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "startup.json").write_text(json.dumps({**self.phases, "total": total}, indent=2))
