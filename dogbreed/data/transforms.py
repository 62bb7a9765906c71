"""The one definition of image preprocessing: the data module, the artifact, export and serving all use it.

Evaluation (validation, test, export, every endpoint) is `EvalTransform`: Resize(256/224 of the crop) →
CenterCrop → scale to [0, 1] → ImageNet normalisation, written with Pillow and numpy, so that a server
without torch (an ONNX model served on a core-only install) preprocesses exactly as training evaluates. It
follows torchvision's own PIL code path step for step and gives the same bits (tests/test_images.py compares
it with torchvision's v2 pipeline). Training augmentation (random crops and flips) is torchvision's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_size(image_size: int) -> int:
    """Shorter-side resize before the centre crop: 256 for 224, the classic ImageNet ratio."""
    return round(image_size * 256 / 224)


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """The shorter side to `size`, the longer one scaled and rounded down (torchvision's rule); PIL's
    bilinear filter antialiases, as torchvision's PIL path does."""
    width, height = image.size
    short, long = sorted((width, height))
    new = (size, int(size * long / short)) if width <= height else (int(size * long / short), size)
    return image if new == (width, height) else image.resize(new, resample=Image.BILINEAR)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """A `size` square from the middle (offsets rounded half to even, as torchvision's); an image smaller
    than the crop is padded with black first."""
    width, height = image.size
    if size > width or size > height:
        pad_left, pad_top = max(0, (size - width) // 2), max(0, (size - height) // 2)
        canvas = Image.new(image.mode, (max(size, width), max(size, height)), 0)
        canvas.paste(image, (pad_left, pad_top))
        image, (width, height) = canvas, canvas.size
    top, left = round((height - size) / 2.0), round((width - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


@dataclass(frozen=True)
class EvalTransform:
    """RGB PIL image → C×H×W float32 array (a DataLoader batches these into tensors). Its repr names every
    setting: the feature cache keys on it."""

    image_size: int = 224
    resize: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __call__(self, image: Image.Image) -> np.ndarray:
        image = resize_shorter_side(image, self.resize or resize_size(self.image_size))
        pixels = np.asarray(center_crop(image, self.image_size), dtype=np.uint8)
        chw = pixels.reshape(*pixels.shape[:2], -1).transpose(2, 0, 1).astype(np.float32) * np.float32(
            1 / 255
        )
        mean = np.asarray(self.mean, np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(-1, 1, 1)
        return np.ascontiguousarray((chw - mean) / std)  # a division, as torchvision's Normalize


def train_transform(image_size: int = 224) -> Any:
    """RandomResizedCrop + horizontal flip + ImageNet normalisation (PIL image in, CHW float tensor out)."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform(image_size: int = 224) -> EvalTransform:
    """Validation and test: the centre crop at `image_size` after resizing to 256/224 of it."""
    return EvalTransform(image_size)


def preprocessing_config(image_size: int = 224) -> dict[str, Any]:
    """What an artifact records so that inference rebuilds exactly `eval_transform`."""
    return {
        "image_size": image_size,
        "resize_size": resize_size(image_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def eval_transform_from_config(cfg: dict[str, Any]) -> EvalTransform:
    """Rebuild the evaluation transform from an artifact's `preprocessing` block."""
    return EvalTransform(cfg["image_size"], cfg["resize_size"], tuple(cfg["mean"]), tuple(cfg["std"]))
