"""Rules on the machine: steps that stall, time spent waiting for data, CPU the training uses.

`SystemMonitor` also samples CPU and memory for the report (`debug/system.csv`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytorch_lightning as pl

from dogbreed.debug.rules import Rule, needs


class StalledTraining(Rule):
    """No training step for `threshold` seconds: a hang (data, a deadlock, a stuck collective)."""

    name = "stalled_training"
    debugger_name = "StalledTrainingRule"
    hint = "look at what the process waits on (py-spy dump --pid …): data loading, I/O, another rank"

    def __init__(self, threshold: float = 1800.0, interval_s: float = 1.0) -> None:
        super().__init__()
        self.threshold, self.interval = threshold, interval_s
        self.last = 0.0
        self.longest = 0.0
        self.steps = 0
        self._stop = threading.Event()

    def on_train_start(self, trainer, pl_module) -> None:
        self.last = time.monotonic()
        self._thread = threading.Thread(target=self._watch, args=(trainer,), daemon=True, name="stall-watch")
        self._thread.start()

    def _watch(self, trainer: pl.Trainer) -> None:
        while not self._stop.wait(self.interval):
            gap = time.monotonic() - self.last
            if gap > self.threshold:
                self.flag(trainer, f"no training step for {gap:.0f} s (> {self.threshold:g} s)")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        self.longest, self.last, self.steps = max(self.longest, now - self.last), now, self.steps + 1

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop.set()

    def not_judged(self) -> str | None:
        return needs("training step", self.steps, 1)

    def ok_evidence(self) -> str:
        return f"longest wait for a step {self.longest:.1f} s (threshold {self.threshold:g} s)"


class DataloaderBottleneck(Rule):
    """Share of step time spent waiting for the next batch (rather than computing on it).

    `clock` is replaceable (tests drive it) so that a verdict need not depend on how busy the machine is."""

    name = "dataloader_bottleneck"
    hint = (
        "raise data.num_workers, or cache decoded/resized images (data.cache_features for a frozen backbone)"
    )

    def __init__(self, threshold: float = 0.5, warmup_steps: int = 2) -> None:
        super().__init__()
        self.threshold, self.warmup = threshold, warmup_steps
        self.steps: list[dict[str, float]] = []
        self._end: float | None = None
        self._start = 0.0
        self.clock: Callable[[], float] = time.perf_counter

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._end = self.clock()  # waiting for the first batch of an epoch counts too

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = self.clock()
        self._wait = self._start - self._end if self._end is not None else 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._end = self.clock()
        self.steps.append(
            {
                "step": trainer.global_step,
                "time": time.time(),
                "data_wait_s": self._wait,
                "compute_s": self._end - self._start,
            }
        )

    def share(self) -> float:
        counted = self.steps[self.warmup :] or self.steps
        total = sum(s["data_wait_s"] + s["compute_s"] for s in counted)
        return sum(s["data_wait_s"] for s in counted) / total if total else 0.0

    def on_train_end(self, trainer, pl_module) -> None:
        share = self.share()
        if share > self.threshold and len(self.steps) > self.warmup:
            self.flag(trainer, f"{share:.0%} of step time waiting for data (> {self.threshold:.0%})")

    def not_judged(self) -> str | None:
        return needs("training steps", len(self.steps), self.warmup + 1)

    def ok_evidence(self) -> str:
        return f"{self.share():.0%} of step time waiting for data"


Usage = tuple[dict[int, float], int]  # CPU seconds by pid, total RSS bytes


class SystemMonitor(Rule):
    """Samples CPU and RSS of the training process and its workers; flags low CPU use while training.

    CPU is this process tree's own use, as a share of all cores: other programs on the machine neither
    hide a starved run nor make one look busy. `reader` and `cores` replace the live readings (tests feed
    recorded ones, so a verdict never depends on how busy the machine is).
    """

    name = "low_cpu_utilization"
    hint = "the run waits on something else (I/O, data, a lock): see the step time breakdown"

    def __init__(
        self,
        threshold_percent: float = 10.0,
        warmup_s: float = 2.0,
        interval_s: float = 0.5,
        reader: Callable[[], Usage] | None = None,
        cores: int | None = None,
    ) -> None:
        super().__init__()
        self.threshold, self.warmup, self.interval = threshold_percent, warmup_s, interval_s
        self.read = reader or (lambda: _usage(psutil.Process()))
        self.cores = cores or psutil.cpu_count() or 1
        self.clock: Callable[[], float] = time.time  # replaceable: tests drive it with the reader
        self.samples: list[dict[str, float]] = []
        self._stop: Any = None
        self._seen: dict[int, float] = {}
        self._last = 0.0

    def record(self, now: float, usage: Usage) -> None:
        """One sample from a reading: CPU used since the previous reading, as a share of all cores."""
        cpu, rss = usage
        # per process: a worker started since the last sample counts from zero; one that ended drops out
        used = sum(seconds - self._seen.get(pid, 0.0) for pid, seconds in cpu.items())
        busy = min(100.0, max(0.0, used) / max(now - self._last, 1e-9) / self.cores * 100)
        self._seen, self._last = cpu, now
        self.samples.append({"time": now, "cpu_percent": busy, "rss_mb": rss / 2**20})

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.record(self.clock(), self.read())

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = self._last = self.clock()
        self._seen = self.read()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="system-monitor")
        self._thread.start()

    def mean_cpu(self) -> float | None:
        """CPU share over the time after the warm-up, each sample weighted by the interval it covers."""
        weighted = total = 0.0
        previous = self._started
        for s in self.samples:
            if s["time"] - self._started >= self.warmup:
                weighted += s["cpu_percent"] * (s["time"] - previous)
                total += s["time"] - previous
            previous = s["time"]
        return weighted / total if total > 0 else None

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop.set()
        self._thread.join()
        self.record(self.clock(), self.read())  # the last interval counts too, however short the run
        mean = self.mean_cpu()
        if mean is not None and mean < self.threshold:
            self.flag(trainer, f"training used {mean:.1f}% of all cores on average (< {self.threshold:g}%)")

    def not_judged(self) -> str | None:
        if self.mean_cpu() is None:
            return f"needs samples after the first {self.warmup:g} s of training, the run had none"
        return None

    def ok_evidence(self) -> str:
        return f"training used {self.mean_cpu():.1f}% of all cores"


def _usage(process: psutil.Process) -> Usage:
    """CPU seconds (user + system) by pid, and total RSS, of `process` and its live descendants."""
    cpu, rss = {}, 0
    for p in [process, *process.children(recursive=True)]:
        try:
            with p.oneshot():
                times, memory = p.cpu_times(), p.memory_info()
        except psutil.Error:  # a worker that just exited
            continue
        cpu[p.pid] = times.user + times.system
        rss += memory.rss
    return cpu, rss
