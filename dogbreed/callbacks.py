"""Lightning callbacks of the training entry point."""

from __future__ import annotations

import sys
from typing import TextIO

import pytorch_lightning as pl

from dogbreed.metric_lines import epoch_line, test_line


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
