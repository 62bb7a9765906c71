"""One search trial on backbone features: a fresh linear head in a plain PyTorch loop.

With the backbone out of the picture a step is a 512×C matrix product, and a framework's per-step
bookkeeping would cost more than the step itself. The optimizer, schedule and loss are the model's own
(`dogbreed.model.make_*`), so a trial trains the head exactly as `DogBreedClassifier` would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TextIO

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from dogbreed.data.features import FeatureSource
from dogbreed.model import make_criterion, make_optimizer, make_scheduler
from dogbreed.training.metric_lines import epoch_line

# Called after each epoch with (epoch, val_acc); raises to stop the trial (Optuna's pruning).
Report = Callable[[int, float], None]


def fit_head(
    cfg: DictConfig,
    train: FeatureSource,
    valid: FeatureSource,
    num_classes: int,
    lines: TextIO,
    seed: int,
    report: Report | None = None,
) -> None:
    """Train a head with `cfg.model`'s settings for `cfg.trainer.max_epochs`, printing the metric lines.

    The features come from the cache or, for comparison, from the backbone batch by batch
    (`ComputedFeatures`): same numbers.
    """
    generator = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(train.dim, num_classes)
    with torch.no_grad():  # initialised from the trial's own generator: threads do not share RNG state
        bound = 1 / train.dim**0.5
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    batch_size, epochs = cfg.data.batch_size, cfg.trainer.max_epochs
    optimizer = make_optimizer(head.parameters(), cfg.model)
    scheduler = make_scheduler(optimizer, cfg.model, epochs * math.ceil(len(train) / batch_size))
    criterion = make_criterion(cfg.model)
    for epoch in range(epochs):
        for features, targets in train.batches(torch.randperm(len(train), generator=generator), batch_size):
            loss = criterion(head(features), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        loss_sum, correct = 0.0, 0
        with torch.no_grad():
            for features, targets in valid.batches(None, 256):
                logits = head(features)
                loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
                correct += int((logits.argmax(1) == targets).sum())
        print(epoch_line(epoch, loss_sum / len(valid), correct / len(valid)), file=lines, flush=True)
        if report is not None:
            report(epoch, correct / len(valid))
