"""The one definition of image preprocessing: the data module, the artifact and inference all use it."""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_size(image_size: int) -> int:
    """Shorter-side resize before the centre crop: 256 for 224, the classic ImageNet ratio."""
    return round(image_size * 256 / 224)


def _to_normalized_tensor(mean: tuple[float, ...], std: tuple[float, ...]) -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def train_transform(image_size: int = 224) -> v2.Compose:
    """RandomResizedCrop + horizontal flip + ImageNet normalisation (PIL image in, CHW float tensor out)."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, antialias=True),
            v2.RandomHorizontalFlip(),
            *_to_normalized_tensor(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform(
    image_size: int = 224,
    resize: int | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> v2.Compose:
    """Resize(256) + CenterCrop(224) + normalisation: validation, test, export and serving."""
    return v2.Compose(
        [
            v2.Resize(resize or resize_size(image_size), antialias=True),
            v2.CenterCrop(image_size),
            *_to_normalized_tensor(tuple(mean), tuple(std)),
        ]
    )


def preprocessing_config(image_size: int = 224) -> dict[str, Any]:
    """What an artifact records so that inference rebuilds exactly `eval_transform`."""
    return {
        "image_size": image_size,
        "resize_size": resize_size(image_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def eval_transform_from_config(cfg: dict[str, Any]) -> v2.Compose:
    """Rebuild the evaluation transform from an artifact's `preprocessing` block."""
    return eval_transform(cfg["image_size"], cfg["resize_size"], tuple(cfg["mean"]), tuple(cfg["std"]))
