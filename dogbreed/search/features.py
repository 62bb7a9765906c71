"""A search trial's view of cached backbone features: batches indexed out of tensors in memory.

`dogbreed.data.features.FeatureCache` computes the features once per search; every trial then draws its
batches from them in its own order, with no backbone pass and no DataLoader.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import TensorDataset

Batch = tuple[torch.Tensor, torch.Tensor]


class CachedFeatures:
    """(features, targets) batches of one split, in a given order (None: the split's own order)."""

    def __init__(self, dataset: TensorDataset) -> None:
        self.features, self.targets = dataset.tensors
        self.dim = self.features.shape[1]

    def __len__(self) -> int:
        return len(self.targets)

    def batches(self, order: torch.Tensor | None, batch_size: int) -> Iterator[Batch]:
        order = torch.arange(len(self)) if order is None else order
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            yield self.features[index], self.targets[index]
