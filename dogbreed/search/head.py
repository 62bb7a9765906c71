"""One search trial on backbone features: a fresh linear head in a plain PyTorch loop.

With the backbone out of the picture a step is a 512×C matrix product, and a framework's per-step
bookkeeping would cost more than the step itself. The optimizer, schedule and loss are the model's own
(`dogbreed.model.make_*`), so a trial trains the head exactly as `DogBreedClassifier` would with
`data.cache_features=true`: tests/test_search.py trains one head both ways and gets the same weights,
bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TextIO

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from dogbreed.model import make_criterion, make_optimizer, make_scheduler
from dogbreed.search.features import CachedFeatures
from dogbreed.training.metric_lines import epoch_line

# Called after each epoch with (epoch, val_acc); raises to stop the trial (Optuna's pruning).
Report = Callable[[int, float], None]


def new_head(dim: int, num_classes: int, generator: torch.Generator) -> torch.nn.Linear:
    """A linear head initialised as `nn.Linear` is (uniform within 1/sqrt(dim)), but from `generator`:
    trials run in threads, which must not share the global RNG."""
    head = torch.nn.Linear(dim, num_classes)
    with torch.no_grad():
        bound = 1 / dim**0.5
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    return head


def fit_head(
    cfg: DictConfig,
    train: CachedFeatures,
    valid: CachedFeatures,
    num_classes: int,
    lines: TextIO,
    seed: int,
    report: Report | None = None,
) -> torch.nn.Linear:
    """Train a head with `cfg.model`'s settings for `cfg.trainer.max_epochs`, printing the metric lines;
    returns the trained head. `seed` draws the head (`new_head`, first) and then each epoch's batch order.
    """
    generator = torch.Generator().manual_seed(seed)
    head = new_head(train.dim, num_classes, generator)
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
    return head
