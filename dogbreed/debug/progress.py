"""Rules on how training progresses: the loss, train vs validation, accuracy against chance, classes."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from dogbreed.debug.rules import Rule, needs


class LossNotDecreasing(Rule):
    """Every `num_steps` steps: did the mean loss of the last `num_steps` fall by `diff_percent` % against
    the `num_steps` before (Debugger compares two single saved losses; a mean of each window is steadier)?"""

    name = "loss_not_decreasing"
    debugger_name = "LossNotDecreasing"
    hint = "check the learning rate (too small, or zero) and that the labels match the inputs"

    def __init__(self, num_steps: int = 10, diff_percent: float = 0.1, patience: int = 1) -> None:
        super().__init__()
        self.num_steps, self.diff_percent, self.patience = num_steps, diff_percent, patience
        self.losses: list[float] = []
        self.checks, self.stalled, self.last = 0, 0, ""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        n = self.num_steps
        if len(self.losses) < 2 * n or len(self.losses) % n:
            return
        before = sum(self.losses[-2 * n : -n]) / n
        now = sum(self.losses[-n:]) / n
        change = (now - before) / abs(before) * 100 if before else 0.0  # negative: the loss fell
        self.checks += 1
        self.last = f"mean loss {before:.4f} → {now:.4f} ({change:+.2f} %) over the last {n} steps"
        self.stalled = self.stalled + 1 if -change < self.diff_percent else 0
        if self.stalled >= self.patience:
            self.flag(trainer, f"{self.last}: less than the {self.diff_percent} % decrease required")

    def not_judged(self) -> str | None:
        return needs("training steps", len(self.losses), 2 * self.num_steps) if not self.checks else None

    def ok_evidence(self) -> str:
        return f"{self.checks} checks; last: {self.last}"


class ValidationRule(Rule):
    """Rules that compare epoch-level train and validation loss: at each training epoch's end, when both
    this epoch's validation loss and its training loss are logged."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs = 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if "val/loss" not in metrics or "train/loss" not in metrics:
            return  # no validation this epoch
        self.epochs += 1
        self.check(trainer, float(metrics["val/loss"]), float(metrics["train/loss"]))

    def check(self, trainer: pl.Trainer, val_loss: float, train_loss: float) -> None:
        raise NotImplementedError


class Overfit(ValidationRule):
    name = "overfit"
    debugger_name = "Overfit"
    hint = "more data or augmentation, weight decay, fewer epochs (the best checkpoint is kept anyway)"

    def __init__(self, ratio_threshold: float = 0.1, patience: int = 1, start_epoch: int = 0) -> None:
        super().__init__()
        self.ratio, self.patience, self.start = ratio_threshold, patience, start_epoch
        self.count, self.last = 0, ""

    def check(self, trainer: pl.Trainer, val_loss: float, train_loss: float) -> None:
        if trainer.current_epoch < self.start:
            return
        ratio = (val_loss - train_loss) / abs(train_loss) if train_loss else 0.0
        self.last = f"val loss {val_loss:.4f} vs train loss {train_loss:.4f}: ratio {ratio:+.2f}"
        self.count = self.count + 1 if ratio > self.ratio else 0
        if self.count >= self.patience:
            self.flag(trainer, f"{self.last} > {self.ratio:g} for {self.count} epoch(s)")

    def not_judged(self) -> str | None:
        return needs("epochs with a train and a val loss", self.epochs, 1)

    def ok_evidence(self) -> str:
        return self.last


class Overtraining(ValidationRule):
    name = "overtraining"
    debugger_name = "Overtraining"
    hint = "stop earlier: the best checkpoint is tested, later epochs only cost time"

    def __init__(self, patience_validation: int = 10, delta: float = 0.01) -> None:
        super().__init__()
        self.patience, self.delta, self.best, self.since_best = patience_validation, delta, math.inf, 0

    def check(self, trainer: pl.Trainer, val_loss: float, train_loss: float) -> None:
        if val_loss < self.best - self.delta:
            self.best, self.since_best = val_loss, 0
            return
        self.since_best += 1
        if self.since_best >= self.patience:
            self.flag(
                trainer,
                f"no val loss better than {self.best:.4f} - {self.delta:g} for {self.since_best} epochs",
            )

    def not_judged(self) -> str | None:
        return needs("validation epochs", self.epochs, self.patience + 1)

    def ok_evidence(self) -> str:
        return f"best val loss {self.best:.4f}, {self.since_best} epochs since"


class ClassImbalance(Rule):
    """Label counts over the first training epoch (largest / smallest class), and per-class mispredictions
    over the last one."""

    name = "class_imbalance"
    debugger_name = "ClassImbalance"
    hint = "balance the classes (a weighted sampler or loss), or collect more images of the rare ones"

    def __init__(
        self,
        threshold_imbalance: float = 10.0,
        threshold_misprediction: float = 0.7,
        min_class_samples: int = 10,
    ) -> None:
        super().__init__()
        self.imbalance, self.misprediction, self.min_samples = (
            threshold_imbalance,
            threshold_misprediction,
            min_class_samples,
        )
        self.counts: torch.Tensor | None = None
        self.epoch_total: torch.Tensor | None = None
        self.epoch_wrong: torch.Tensor | None = None
        self.epochs = 0
        self.summary = ""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        classes = pl_module.num_classes
        self.epoch_total, self.epoch_wrong = torch.zeros(classes), torch.zeros(classes)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        labels = batch[1].detach().cpu()
        self.epoch_total += torch.bincount(labels, minlength=len(self.epoch_total)).float()
        if isinstance(outputs, dict) and "logits" in outputs:
            wrong = labels[outputs["logits"].argmax(1).cpu() != labels]
            self.epoch_wrong += torch.bincount(wrong, minlength=len(self.epoch_wrong)).float()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs += 1
        if self.counts is not None:
            return
        self.counts = self.epoch_total.clone()  # the first epoch saw every training image once
        smallest, largest = float(self.counts.min()), float(self.counts.max())
        ratio = largest / smallest if smallest else math.inf
        self.summary = f"{int(smallest)}–{int(largest)} images per class (ratio {ratio:.2f})"
        if ratio > self.imbalance:
            self.flag(trainer, f"{self.summary} > {self.imbalance:g}")

    def on_train_end(self, trainer, pl_module) -> None:
        """Mispredictions of the last epoch, once the model has trained."""
        if self.epoch_total is None:
            return
        judged = self.epoch_total >= self.min_samples
        rates = torch.where(judged, self.epoch_wrong / self.epoch_total.clamp(min=1), torch.zeros(()))
        worst = int(rates.argmax())
        self.summary += f"; last epoch: at most {float(rates[worst]):.0%} of a class mispredicted"
        if judged.any() and float(rates[worst]) > self.misprediction:
            self.flag(
                trainer, f"class {worst} mispredicted in {float(rates[worst]):.0%} of its training images"
            )

    def not_judged(self) -> str | None:
        return needs("training epoch", self.epochs, 1)

    def ok_evidence(self) -> str:
        return self.summary


class AccuracyAtChance(Rule):
    """Validation accuracy still near chance (1 / number of classes) after `after_epochs` epochs."""

    name = "accuracy_at_chance"
    hint = "the model learns nothing: check the learning rate, that labels match images, that data varies"

    def __init__(self, after_epochs: int = 1, min_ratio: float = 1.5) -> None:
        super().__init__()
        self.after, self.min_ratio, self.epochs, self.last = after_epochs, min_ratio, 0, ""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or "val/acc" not in trainer.callback_metrics:
            return
        self.epochs += 1
        chance = 1 / pl_module.num_classes
        accuracy = float(trainer.callback_metrics["val/acc"])
        self.last = f"val acc {accuracy:.3f} after {self.epochs} epoch(s); chance {chance:.3f}"
        if self.epochs >= self.after and accuracy < chance * self.min_ratio:
            self.flag(trainer, f"{self.last}, below {self.min_ratio:g} × chance")

    def not_judged(self) -> str | None:
        return needs("validation epochs", self.epochs, self.after)

    def ok_evidence(self) -> str:
        return self.last
