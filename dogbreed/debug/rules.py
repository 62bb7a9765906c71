"""Training rules as Lightning callbacks, named and meant as SageMaker Debugger's built-ins.

Each rule watches the run and ends with a verdict: `ok`, or `issue` with the step where it was first seen
and the evidence. Only parameters that train are inspected: frozen ones have no gradient and are skipped
(where smdebug crashed on them).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)


class Rule(pl.Callback):
    name = "rule"

    def __init__(self) -> None:
        self.step: int | None = None
        self.evidence = ""

    def flag(self, step: int, evidence: str) -> None:
        if self.step is None:
            self.step, self.evidence = step, evidence
            log.warning("rule %s: issue found at step %d: %s", self.name, step, evidence)

    def ok_evidence(self) -> str:
        return "no issue seen"

    def verdict(self) -> dict[str, Any]:
        if self.step is None:
            return {"rule": self.name, "status": "ok", "step": None, "evidence": self.ok_evidence()}
        return {"rule": self.name, "status": "issue", "step": self.step, "evidence": self.evidence}


def trainable(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


class VanishingGradient(Rule):
    name = "vanishing_gradient"

    def __init__(self, threshold: float = 1e-7) -> None:
        super().__init__()
        self.threshold, self.smallest = threshold, math.inf

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        grads = [p.grad.abs().mean() for _, p in trainable(pl_module) if p.grad is not None]
        if not grads:
            return
        mean = float(torch.stack(grads).mean())
        self.smallest = min(self.smallest, mean)
        if mean < self.threshold:
            self.flag(trainer.global_step, f"mean |gradient| {mean:.3g} < {self.threshold:g}")

    def ok_evidence(self) -> str:
        return f"smallest mean |gradient| {self.smallest:.3g}"


class ExplodingTensor(Rule):
    name = "exploding_tensor"

    def __init__(self, threshold: float = 1e6) -> None:
        super().__init__()
        self.threshold, self.largest = threshold, 0.0

    def _check(self, step: int, what: str, tensor: torch.Tensor) -> None:
        if not torch.isfinite(tensor).all():
            self.flag(step, f"{what} has NaN or inf")
            return
        largest = float(tensor.detach().abs().max())
        self.largest = max(self.largest, largest)
        if largest > self.threshold:
            self.flag(step, f"|{what}| reached {largest:.3g} > {self.threshold:g}")

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for name, p in trainable(pl_module):
            if p.grad is not None:
                self._check(trainer.global_step, f"gradient of {name}", p.grad)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._check(trainer.global_step, "loss", outputs["loss"])
        for name, p in trainable(pl_module):
            self._check(trainer.global_step, name, p)

    def ok_evidence(self) -> str:
        return f"largest |value| {self.largest:.3g}"


class LossNotDecreasing(Rule):
    name = "loss_not_decreasing"

    def __init__(self, window: int = 10, min_decrease_percent: float = 0.1, patience: int = 3) -> None:
        super().__init__()
        self.window, self.min_decrease, self.patience = window, min_decrease_percent, patience
        self.losses: list[float] = []
        self.previous: float | None = None
        self.stalled = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        if len(self.losses) < self.window:
            return
        mean, self.losses = sum(self.losses) / len(self.losses), []
        if self.previous is not None:
            decrease = (self.previous - mean) / abs(self.previous) * 100 if self.previous else 0.0
            self.stalled = self.stalled + 1 if decrease < self.min_decrease else 0
            if self.stalled >= self.patience:
                self.flag(
                    trainer.global_step,
                    f"mean loss over {self.window} steps went {self.previous:.4f} → "
                    f"{mean:.4f}, {self.stalled} windows without a {self.min_decrease}% decrease",
                )
        self.previous = mean


class ValidationRule(Rule):
    """Rules that compare epoch-level train and validation loss."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or "val/loss" not in metrics:
            return
        train_loss = float(metrics["train/loss"]) if "train/loss" in metrics else None
        self.check(trainer.global_step, float(metrics["val/loss"]), train_loss)

    def check(self, step: int, val_loss: float, train_loss: float | None) -> None:
        raise NotImplementedError


class Overfit(ValidationRule):
    name = "overfit"

    def __init__(self, ratio: float = 0.5, patience: int = 2) -> None:
        super().__init__()
        self.ratio, self.patience, self.count = ratio, patience, 0

    def check(self, step: int, val_loss: float, train_loss: float | None) -> None:
        if train_loss is None:  # validation before the first training epoch ended
            return
        self.count = self.count + 1 if val_loss > train_loss * (1 + self.ratio) else 0
        if self.count >= self.patience:
            self.flag(
                step,
                f"val loss {val_loss:.4f} > train loss {train_loss:.4f} × {1 + self.ratio:g} "
                f"for {self.count} epochs",
            )


class Overtraining(ValidationRule):
    name = "overtraining"

    def __init__(self, patience: int = 3) -> None:
        super().__init__()
        self.patience, self.best, self.since_best = patience, math.inf, 0

    def check(self, step: int, val_loss: float, train_loss: float | None) -> None:
        if val_loss < self.best:
            self.best, self.since_best = val_loss, 0
            return
        self.since_best += 1
        if self.since_best >= self.patience:
            self.flag(step, f"no new best val loss ({self.best:.4f}) for {self.since_best} epochs")


class PoorWeightInitialization(Rule):
    name = "poor_weight_initialization"

    def __init__(self, min_std: float = 1e-8) -> None:
        super().__init__()
        self.min_std, self.checked = min_std, False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.checked:
            return
        self.checked = True
        for name, p in trainable(pl_module):
            if p.ndim >= 2 and float(p.detach().std()) < self.min_std:
                self.flag(
                    trainer.global_step,
                    f"{name} starts with std {float(p.detach().std()):.3g} (all weights alike)",
                )


class DataloaderBottleneck(Rule):
    """Share of step time spent waiting for the next batch (rather than computing on it)."""

    name = "dataloader_bottleneck"

    def __init__(self, threshold: float = 0.5, warmup_steps: int = 2) -> None:
        super().__init__()
        self.threshold, self.warmup = threshold, warmup_steps
        self.steps: list[dict[str, float]] = []
        self._end: float | None = None
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._end = time.perf_counter()  # waiting for the first batch of an epoch counts too

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()
        self._wait = self._start - self._end if self._end is not None else 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._end = time.perf_counter()
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
            self.flag(
                self.steps[-1]["step"],
                f"{share:.0%} of step time waiting for data "
                f"(> {self.threshold:.0%}); raise data.num_workers?",
            )

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
            self.record(time.time(), self.read())

    def on_train_start(self, trainer, pl_module) -> None:
        import threading

        self._started = self._last = time.time()
        self._seen = self.read()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="system-monitor")
        self._thread.start()

    def mean_cpu(self) -> float | None:
        counted = [s["cpu_percent"] for s in self.samples if s["time"] - self._started >= self.warmup]
        return sum(counted) / len(counted) if counted else None

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop.set()
        self._thread.join()
        mean = self.mean_cpu()
        if mean is not None and mean < self.threshold:
            self.flag(
                trainer.global_step,
                f"training used {mean:.1f}% of all cores on average (< {self.threshold:g}%)",
            )

    def ok_evidence(self) -> str:
        mean = self.mean_cpu()
        return "too short to measure" if mean is None else f"training used {mean:.1f}% of all cores"


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


RULES = {
    cls.name: cls
    for cls in (
        VanishingGradient,
        ExplodingTensor,
        LossNotDecreasing,
        Overfit,
        Overtraining,
        PoorWeightInitialization,
        DataloaderBottleneck,
        SystemMonitor,
    )
}
