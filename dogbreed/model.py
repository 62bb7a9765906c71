"""DogBreedClassifier: torchvision ResNet18 with a new linear head, trained with AdamW.

`make_optimizer`, `make_scheduler` and `make_criterion` are the one definition of how a head (or the whole
network) is trained: the LightningModule and the search's cached-feature head loop both call them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.error import URLError

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy
from torchvision.models import ResNet, ResNet18_Weights, resnet18

from dogbreed.errors import WeightsUnavailableError

IMAGENET_WEIGHTS = ResNet18_Weights.IMAGENET1K_V1
OPTIMIZER_SETTINGS = ("lr", "eps", "weight_decay", "betas")

log = logging.getLogger(__name__)


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet ResNet18 weights through torch hub's cache (`$TORCH_HOME/hub/checkpoints`)."""
    try:
        return IMAGENET_WEIGHTS.get_state_dict(progress=True)
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsUnavailableError(
            f"ImageNet weights for resnet18 are not cached and could not be downloaded from "
            f"{IMAGENET_WEIGHTS.url} ({reason})."
        ) from exc


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A local ResNet18 state_dict (`.pth`), loaded without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"model.weights_path={path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsUnavailableError(
            f"model.weights_path={path} is not a loadable state_dict: {exc}"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint of ours
        state = {k.removeprefix("net."): v for k, v in state["state_dict"].items()}
    return state


def build_resnet18(
    num_classes: int, pretrained: bool = False, weights_path: str | Path | None = None
) -> ResNet:
    """ResNet18 with `fc` replaced by Linear(512, num_classes); backbone weights from a file or ImageNet."""
    net = resnet18()
    state = load_weights_file(weights_path) if weights_path else imagenet_state_dict() if pretrained else None
    if state is not None:
        backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            missing, unexpected = net.load_state_dict(backbone, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise WeightsUnavailableError(f"weights do not fit resnet18: {exc}") from exc
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise WeightsUnavailableError(
                f"weights do not fit resnet18: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return net


def make_optimizer(params: Iterable[nn.Parameter], settings: Mapping[str, Any]) -> torch.optim.Optimizer:
    """AdamW with the flat `lr`, `eps`, `weight_decay`, `betas` of a model config (or model hparams)."""
    return torch.optim.AdamW(params, **optimizer_settings(settings))


def make_scheduler(
    optimizer: torch.optim.Optimizer, settings: Mapping[str, Any], steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """`scheduler: cosine` anneals per step over `steps`; null keeps the learning rate constant."""
    if settings.get("scheduler") != "cosine":
        return None
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))


def optimizer_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The AdamW settings of a model config or checkpoint's hyper_parameters, comparable (betas a tuple)."""
    return {
        k: tuple(map(float, settings[k])) if k == "betas" else float(settings[k]) for k in OPTIMIZER_SETTINGS
    }


def apply_optimizer_settings(
    optimizer: torch.optim.Optimizer, settings: Mapping[str, Any], scheduler: Any = None
) -> None:
    """Put `settings` into a restored optimizer (and its cosine schedule, at the step it reached).

    Resuming restores the optimizer's state_dict, learning rate included: without this a run stopped for
    lr=0 and resumed with a new lr would go on at 0."""
    new = optimizer_settings(settings)
    for group in optimizer.param_groups:
        group.update(new)
        if "initial_lr" in group:  # a scheduler's starting point
            group["initial_lr"] = new["lr"]
    if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        scheduler.base_lrs = [new["lr"]] * len(optimizer.param_groups)
        progress = (1 + math.cos(math.pi * scheduler.last_epoch / scheduler.T_max)) / 2
        for group in optimizer.param_groups:
            group["lr"] = scheduler.eta_min + (new["lr"] - scheduler.eta_min) * progress


def make_criterion(settings: Mapping[str, Any]) -> nn.Module:
    """The training loss: cross-entropy with the configured label smoothing."""
    return nn.CrossEntropyLoss(label_smoothing=settings.get("label_smoothing", 0.0))


class DogBreedClassifier(pl.LightningModule):
    """ResNet18 fine-tuned for dog breeds.

    `lr`, `eps`, `weight_decay` and `betas` are flat AdamW arguments because those are the names the
    hyperparameter search tunes. With `freeze_backbone` only the head trains and the backbone's BatchNorm
    layers keep their ImageNet statistics (they stay in eval mode whatever `train()` is called with).
    `calibrate` and `abstain_precision` do not change training: after the test, the run fits what the model
    serves from them (`dogbreed.evaluation.calibration`), and the checkpoint keeps them with the rest.
    """

    def __init__(
        self,
        class_names: list[str] | None = None,
        num_classes: int | None = None,
        pretrained: bool = True,
        weights_path: str | None = None,
        freeze_backbone: bool = True,
        lr: float = 1e-3,
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        betas: tuple[float, float] = (0.9, 0.999),
        label_smoothing: float = 0.0,
        scheduler: str | None = None,
        channels_last: bool = True,
        bn_recalibration: bool = False,
        calibrate: bool = True,
        abstain_precision: float | None = 0.95,
    ) -> None:
        super().__init__()
        if class_names is None and num_classes is None:
            raise ValueError("DogBreedClassifier needs class_names (or num_classes)")
        class_names = list(class_names) if class_names is not None else None
        num_classes = len(class_names) if class_names is not None else int(num_classes)
        if scheduler not in (None, "cosine"):
            raise ValueError(f"model.scheduler must be null or 'cosine', got {scheduler!r}")
        self.save_hyperparameters()
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.net = build_resnet18(num_classes, pretrained, weights_path)
        if freeze_backbone:
            for name, param in self.net.named_parameters():
                param.requires_grad = name.startswith("fc.")
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # ModuleDict keys cannot be "train" (an nn.Module method): suffix them.
        self.accuracy = nn.ModuleDict(
            {
                f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro")
                for stage in ("train", "val", "test")
            }
        )
        self.criterion = make_criterion(self.hparams)  # the training loss (smdebug hooks it)
        self.train()  # a frozen backbone starts in eval mode, as it stays

    @property
    def num_classes(self) -> int:
        return self.net.fc.out_features

    def backbone_modules(self) -> list[nn.Module]:
        return [m for name, m in self.net.named_children() if name != "fc"]

    def train(self, mode: bool = True) -> DogBreedClassifier:
        """Keep a frozen backbone (BatchNorm included) in eval mode whatever Lightning asks for."""
        super().train(mode)
        if self.hparams.freeze_backbone:
            for module in self.backbone_modules():
                module.eval()
        return self

    @torch.no_grad()
    def recalibrate_batchnorm(self, images: Iterable[torch.Tensor]) -> int:
        """AdaBN: re-estimate the backbone's BatchNorm running statistics from `images`; no weight changes.

        A frozen backbone stays in eval mode, so its BatchNorm layers keep the statistics they came with: for
        a random backbone (`pretrained=false`) those are the initial 0/1, which leave its features badly
        scaled. One pass in train mode with a cumulative average fixes that. Returns the images seen.
        """
        norms = [
            m for module in self.backbone_modules() for m in module.modules() if isinstance(m, nn.BatchNorm2d)
        ]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over all batches, not an exponential one
            m.train()
        seen = 0
        try:
            for x in images:
                self.forward_features(x)
                seen += len(x)
        finally:
            for m, momentum in zip(norms, momenta, strict=True):
                m.momentum = momentum
            self.train(self.training)  # a frozen backbone goes back to eval mode
        return seen

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N × 3 × H × W) → backbone output (N × 512): what the feature cache stores."""
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for module in self.backbone_modules():
            x = module(x)
        return torch.flatten(x, 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Backbone features (N × 512) → logits."""
        return self.net.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images → logits; cached backbone features (N × 512) go through the head only."""
        return self.forward_head(x if x.ndim == 2 else self.forward_features(x))

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        """Loss and metrics of a batch; returns the loss and the (detached) logits the debug rules read."""
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y) if stage == "train" else F.cross_entropy(logits, y)
        acc = self.accuracy[f"{stage}_acc"]
        acc(logits, y)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(y),
            sync_dist=True,
        )
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return {"loss": loss, "logits": logits.detach()}

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int = 0) -> torch.Tensor:
        """Class probabilities (N × num_classes); accepts `(x, y)` batches or bare tensors."""
        x = batch[0] if isinstance(batch, list | tuple) else batch
        return self(x).softmax(dim=1)

    def configure_optimizers(self) -> Any:
        params = self.net.fc.parameters() if self.hparams.freeze_backbone else self.net.parameters()
        optimizer = make_optimizer(params, self.hparams)
        if self.hparams.scheduler is None:  # no schedule: the step count is not needed
            return optimizer
        scheduler = make_scheduler(optimizer, self.hparams, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("hyper_parameters", {})
        complete = all(k in saved for k in OPTIMIZER_SETTINGS)  # also read by load_from_checkpoint
        self.resumed_settings = optimizer_settings(saved) if complete else None

    def on_train_start(self) -> None:
        """A resumed run trains with the optimizer settings it was started with now, not the checkpoint's."""
        saved = getattr(self, "resumed_settings", None)
        if saved is None:
            return
        now = optimizer_settings(self.hparams)
        changed = [
            f"{k} {saved[k]:g} → {now[k]:g}" if k != "betas" else f"betas {saved[k]} → {now[k]}"
            for k in OPTIMIZER_SETTINGS
            if saved[k] != now[k]
        ]
        if changed:
            apply_optimizer_settings(self.optimizers(use_pl_optimizer=False), now, self.lr_schedulers())
            log.warning("resumed with changed optimizer settings: %s (Adam moments kept)", ", ".join(changed))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The state_dict holds every weight: reloading must not download ImageNet weights again.
        checkpoint["hyper_parameters"].update(pretrained=False, weights_path=None)
