"""Data: the dogImages data module, its download, generated datasets in the same layout, the one image
decoder and preprocessing, and the frozen-backbone feature cache.

`DogBreedDataModule` is imported lazily, so that serving code (`dogbreed.data.transforms`, `.images`,
`.classes`) loads without Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DogBreedDataModule"]


def __getattr__(name: str) -> Any:
    if name == "DogBreedDataModule":
        from dogbreed.data.datamodule import DogBreedDataModule

        return DogBreedDataModule
    raise AttributeError(f"module 'dogbreed.data' has no attribute {name!r}")
