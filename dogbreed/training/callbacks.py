"""Lightning callbacks of the training entry point."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

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
