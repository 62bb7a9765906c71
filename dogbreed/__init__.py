"""dogbreed: an ImageNet ResNet18 fine-tuned into a 133-breed dog classifier.

`from dogbreed import DogBreedClassifier, DogBreedDataModule`. The imports are lazy so that light
modules (`dogbreed.hparams`, `dogbreed.training.metric_lines`) load without torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["DogBreedClassifier", "DogBreedDataModule"]


def __getattr__(name: str) -> Any:
    if name == "DogBreedClassifier":
        from dogbreed.model import DogBreedClassifier

        return DogBreedClassifier
    if name == "DogBreedDataModule":
        from dogbreed.data import DogBreedDataModule

        return DogBreedDataModule
    raise AttributeError(f"module 'dogbreed' has no attribute {name!r}")
