"""Training rules as Lightning callbacks, named and meant as SageMaker Debugger's built-ins: the verdict
every rule gives, and the rules on tensors (gradients, weights, their updates).

Every rule ends with one of three verdicts, never two:
- `ok`: it looked, and says what it saw (`evidence`);
- `issue`: the step it was first seen, the evidence and a hint what to change;
- `not judged`: why it could not look (e.g. "needs ≥ 20 steps, the run had 12").
A rule in `debug.stop_on` stops training when it finds an issue (`Rule.stop_requested`), as Debugger's
StopTraining action does. Only parameters that train are inspected: frozen ones have no gradient.
Defaults are Debugger's documented ones (conf/debug/on.yaml says where and why we differ).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)

OK, ISSUE, NOT_JUDGED = "ok", "issue", "not judged"


class Rule(pl.Callback):
    """A verdict in the making: `flag` records an issue, `judge` what was seen, `not_judged` why not."""

    name = "rule"
    debugger_name: str | None = None  # the SageMaker Debugger built-in rule of the same meaning, if any
    hint = ""

    def __init__(self) -> None:
        self.step: int | None = None
        self.evidence = ""
        self.stop = False  # set by debug_callbacks for the rules of `debug.stop_on`
        self.stop_requested = False

    def flag(self, trainer: pl.Trainer, evidence: str) -> None:
        if self.step is not None:
            return
        self.step, self.evidence = trainer.global_step, evidence
        log.warning("rule %s: issue at step %d: %s", self.name, self.step, evidence)
        if self.stop:
            self.stop_requested = True
            trainer.should_stop = True  # Lightning ends the epoch loop after this batch

    def not_judged(self) -> str | None:
        """Why this rule could not look at the run; None when it could."""
        return None

    def ok_evidence(self) -> str:
        return "no issue seen"

    def verdict(self) -> dict[str, Any]:
        base = {"rule": self.name, "step": None, "evidence": "", "hint": "", "reason": ""}
        if self.step is not None:
            return {**base, "status": ISSUE, "step": self.step, "evidence": self.evidence, "hint": self.hint}
        reason = self.not_judged()
        if reason is not None:
            return {**base, "status": NOT_JUDGED, "reason": reason}
        return {**base, "status": OK, "evidence": self.ok_evidence()}


def trainable(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


def largest_abs(tensors: list[torch.Tensor]) -> list[float]:
    """max |x| of each tensor (NaN if it holds one, inf if it holds one; 0 if empty), with one sync for all.
    `aminmax` reads each tensor once and vectorises: a per-tensor `isfinite().all()` and `abs().max()` cost
    8 % of a full fine-tuning step, an inf-norm 5 times what this costs."""
    ends = [torch.stack(torch.aminmax(t.detach())) if t.numel() else torch.zeros(2) for t in tensors]
    return torch.stack(ends).abs().amax(dim=1).tolist() if ends else []


def needs(what: str, have: int, need: int) -> str | None:
    return f"needs ≥ {need} {what}, the run had {have}" if have < need else None


class VanishingGradient(Rule):
    name = "vanishing_gradient"
    debugger_name = "VanishingGradient"
    hint = "raise the learning rate or check the loss scale; a deep network may need normalisation"

    def __init__(self, threshold: float = 1e-7) -> None:
        super().__init__()
        self.threshold, self.smallest, self.seen = threshold, math.inf, 0

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        grads = [p.grad.detach() for _, p in trainable(pl_module) if p.grad is not None]
        if not grads:
            return
        self.seen += 1
        # mean |g| of each tensor as its L1 norm / size: one pass, no temporary, one sync for all
        sums = torch.stack([torch.linalg.vector_norm(g, 1) / max(g.numel(), 1) for g in grads])
        mean = float(sums.mean())
        self.smallest = min(self.smallest, mean)
        if mean < self.threshold:
            self.flag(trainer, f"mean |gradient| {mean:.3g} < {self.threshold:g}")

    def not_judged(self) -> str | None:
        return needs("backward pass with gradients", self.seen, 1)

    def ok_evidence(self) -> str:
        return f"smallest mean |gradient| {self.smallest:.3g} over {self.seen} steps"


class ExplodingTensor(Rule):
    name = "exploding_tensor"
    debugger_name = "ExplodingTensor"
    hint = "lower the learning rate, clip gradients, or look for a division by zero / log(0) in the loss"

    def __init__(self, only_nan: bool = False, threshold: float = 1e6) -> None:
        super().__init__()
        self.only_nan, self.threshold, self.largest, self.seen = only_nan, threshold, 0.0, 0

    def _check(self, trainer: pl.Trainer, named: list[tuple[str, torch.Tensor]]) -> None:
        for what, largest in zip([n for n, _ in named], largest_abs([t for _, t in named]), strict=True):
            if math.isnan(largest) or (math.isinf(largest) and not self.only_nan):
                self.flag(trainer, f"{what} has {'NaN' if self.only_nan else 'NaN or inf'}")
                return
            self.largest = max(self.largest, largest)
            if largest > self.threshold:
                self.flag(trainer, f"|{what}| reached {largest:.3g} > {self.threshold:g}")

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(
            trainer, [(f"gradient of {n}", p.grad) for n, p in trainable(pl_module) if p.grad is not None]
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1
        self._check(trainer, [("loss", outputs["loss"]), *trainable(pl_module)])

    def not_judged(self) -> str | None:
        return needs("training step", self.seen, 1)

    def ok_evidence(self) -> str:
        return f"all finite; largest |value| {self.largest:.3g} over {self.seen} steps"


class PoorWeightInitialization(Rule):
    name = "poor_weight_initialization"
    debugger_name = "PoorWeightInitialization"
    hint = "initialise trainable weights with spread (e.g. torch.nn.init.kaiming_uniform_)"

    def __init__(self, min_std: float = 1e-8) -> None:
        super().__init__()
        self.min_std, self.checked = min_std, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.checked:
            return
        for name, p in trainable(pl_module):
            self.checked += 1
            if p.ndim >= 2 and float(p.detach().std()) < self.min_std:
                self.flag(
                    trainer, f"{name} starts with std {float(p.detach().std()):.3g} (all weights alike)"
                )

    def not_judged(self) -> str | None:
        return needs("trainable tensors at the first step", self.checked, 1)

    def ok_evidence(self) -> str:
        return f"{self.checked} trainable tensors start with spread"


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainable(module)}


def unchanged(now: torch.Tensor, before: torch.Tensor, rtol: float, atol: float) -> bool:
    """`torch.allclose(now, before, rtol, atol)` for finite tensors, in half its passes over memory."""
    gap = torch.sub(now, before).abs_().sub_(before.abs(), alpha=rtol)
    return bool(gap.amax() <= atol) if gap.numel() else True


class UnchangedTensor(Rule):
    """Trainable weights that do not move over `num_steps` steps (`torch.allclose` with rtol/atol)."""

    name = "unchanged_tensor"
    debugger_name = "UnchangedTensor"
    hint = "the optimizer does not update these weights: a learning rate of 0, or parameters missing from it"

    def __init__(self, num_steps: int = 3, rtol: float = 1e-5, atol: float = 1e-8) -> None:
        super().__init__()
        self.num_steps, self.rtol, self.atol = num_steps, rtol, atol
        self.before: dict[str, torch.Tensor] | None = None
        self.steps = self.checks = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.before is None:
            self.before = snapshot(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1
        if self.steps % self.num_steps or self.before is None:
            return
        params = dict(trainable(pl_module))
        same = [n for n, p in params.items() if unchanged(p.detach(), self.before[n], self.rtol, self.atol)]
        for name, p in params.items():
            self.before[name].copy_(p.detach())  # the next window's start, in the same memory
        self.checks += 1
        if same:
            self.flag(
                trainer,
                f"{len(same)} of {len(params)} trainable tensors unchanged over {self.num_steps} steps: "
                f"{same[:3]}",
            )

    def not_judged(self) -> str | None:
        return needs("training steps", self.steps, self.num_steps) if not self.checks else None

    def ok_evidence(self) -> str:
        return f"every trainable tensor moved in each of {self.checks} windows of {self.num_steps} steps"


class WeightUpdateRatio(Rule):
    """Every `num_steps` steps from the first this process trains (a resumed run is checked at once, not at
    the next multiple of `num_steps`), |update| / |weight| of each trainable tensor over one step."""

    name = "weight_update_ratio"
    debugger_name = "WeightUpdateRatio"
    hint = "a ratio above the bound: lower the learning rate; below it: raise it (or the updates are lost)"

    def __init__(
        self,
        num_steps: int = 500,
        large_threshold: float = 10.0,
        small_threshold: float = 1e-8,
        epsilon: float = 1e-9,
    ) -> None:
        super().__init__()
        self.num_steps, self.large, self.small, self.epsilon = (
            num_steps,
            large_threshold,
            small_threshold,
            epsilon,
        )
        self.before: dict[str, torch.Tensor] | None = None
        self.checks, self.range, self.first_step = 0, (math.inf, 0.0), 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.first_step = trainer.global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        due = (trainer.global_step - self.first_step) % self.num_steps == 0
        self.before = snapshot(pl_module) if due else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.before is None:
            return
        self.checks += 1
        for name, p in trainable(pl_module):
            old = self.before[name]
            ratio = float((p.detach() - old).norm() / (old.norm() + self.epsilon))
            self.range = (min(self.range[0], ratio), max(self.range[1], ratio))
            if ratio > self.large or ratio < self.small:
                bound = f"> {self.large:g}" if ratio > self.large else f"< {self.small:g}"
                self.flag(trainer, f"update/weight ratio of {name} is {ratio:.3g} ({bound})")
        self.before = None

    def not_judged(self) -> str | None:
        return needs("training step", self.checks, 1)

    def ok_evidence(self) -> str:
        return f"ratios {self.range[0]:.3g} … {self.range[1]:.3g} in {self.checks} checks"
