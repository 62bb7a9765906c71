"""bench/debug_overhead.py's in-loop clock counts what it claims: hooks in its window, threads' CPU."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from debug_overhead import HookClock
from train_loop import lightning_run

SLEEP_S, STEPS = 0.1, 3


class Costly(pl.Callback):
    """A known cost: sleeps in every training step's end hook, and spins a thread while training runs."""

    name = "costly"

    def on_train_start(self, trainer, pl_module) -> None:
        self.running = True
        self.thread = threading.Thread(target=self.spin, daemon=True)
        self.thread.start()

    def spin(self) -> None:
        while self.running:
            sum(range(10_000))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(SLEEP_S)

    def on_train_end(self, trainer, pl_module) -> None:
        self.running = False
        self.thread.join()


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
def test_hook_clock_counts_hook_time_in_its_window_and_thread_cpu() -> None:
    batch = (torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    costly = Costly()
    clock = HookClock(warmup=1, steps=STEPS, callbacks=[costly])
    lightning_run(batch, STEPS, 1, freeze=True, classes=2, callbacks=[costly, clock])
    hooks = clock.per_rule()["costly"]
    # every measured step's end hook, not the warm-up step's (before the window)
    assert STEPS * SLEEP_S <= hooks < (STEPS + 1) * SLEEP_S
    assert hooks < clock.end - clock.start
    assert clock.background_s > 0  # the spinning thread's CPU inside the window
