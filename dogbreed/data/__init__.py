"""Data: the dogImages data module, its download, and generated datasets in the same layout."""

from dogbreed.data.datamodule import DogBreedDataModule

__all__ = ["DogBreedDataModule"]
