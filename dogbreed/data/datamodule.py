"""DogBreedDataModule: dogImages-layout folders (train/valid/test) as Lightning dataloaders."""

from __future__ import annotations

import json
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from PIL import Image
from rich.progress import track
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dogbreed.atomic import atomic_write_text
from dogbreed.data.download import DOGIMAGES_URL, SPLITS, fetch_dataset
from dogbreed.data.features import files_key
from dogbreed.data.images import open_rgb
from dogbreed.data.synthetic import generate_dataset
from dogbreed.data.transforms import eval_transform, train_transform
from dogbreed.errors import DatasetError, DataUnavailableError

log = logging.getLogger(__name__)

Sample = tuple[Path, int]


def image_problem(path: Path) -> str | None:
    """Why `path` cannot be used as an image, or None. Decodes JPEGs at 1/8 scale: cheap, yet complete."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return str(exc) or type(exc).__name__
    return None


def scan_split(folder: Path) -> tuple[list[str], list[Sample]]:
    """Class folder names (sorted) and every visible file under them with its class index."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    samples = [
        (f, index)
        for index, name in enumerate(classes)
        for f in sorted((folder / name).iterdir())
        if f.is_file() and not f.name.startswith(".")
    ]
    return classes, samples


def class_mismatch(classes: dict[str, list[str]]) -> str | None:
    """A sentence naming the classes that some split lacks, or None when all splits agree."""
    union = set().union(*classes.values())
    missing = {split: sorted(union - set(names)) for split, names in classes.items()}
    missing = {split: names for split, names in missing.items() if names}
    if not missing:
        return None
    return "; ".join(f"{split} lacks {names[:10]}" for split, names in missing.items())


class ImageList(Dataset):
    """(image, class index) pairs from a list of files."""

    def __init__(self, samples: list[Sample], transform: Any) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        return self.transform(open_rgb(path)), target


class DogBreedDataModule(pl.LightningDataModule):
    """`root` holds `train/`, `valid/`, `test/` with one folder per class (dogImages layout).

    When `root` is missing, `prepare_data` generates it (`synthetic` set) or downloads `url`.
    Unreadable images are named and skipped before training (`strict=True` makes them an error).
    `augment=False` trains on the evaluation transform. `cache_features`, `cache_dir` and `cache_views` are
    the settings of `dogbreed.data.features.FeatureCache`, which computes backbone features once; with
    `use_features` the loaders serve those instead of images.
    """

    def __init__(
        self,
        root: str = "data/dogImages",
        batch_size: int = 32,
        num_workers: int = 2,
        image_size: int = 224,
        url: str | None = DOGIMAGES_URL,
        expected_classes: int | None = 133,
        strict: bool = False,
        synthetic: dict[str, int] | None = None,
        pin_memory: bool = False,
        augment: bool = True,
        cache_features: bool = False,
        cache_dir: str = "data/.feature-cache",
        cache_views: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root)
        self.class_names: list[str] = []
        self.samples: dict[str, list[Sample]] = {}
        self.skipped: list[tuple[Path, str]] = []
        self.feature_sets: dict[str, TensorDataset] = {}

    def prepare_data(self) -> None:
        if self.root.exists():
            return
        if self.hparams.synthetic:
            log.info("generating a synthetic dataset in %s", self.root)
            generate_dataset(self.root, **self.hparams.synthetic)
        elif self.hparams.url:
            log.info("%s is missing: downloading %s", self.root, self.hparams.url)
            fetch_dataset(self.hparams.url, self.root, self.hparams.expected_classes)
        else:
            raise DataUnavailableError(f"{self.root} does not exist and data.url is not set.")

    def setup(self, stage: str | None = None) -> None:
        if self.samples:
            return
        missing = [s for s in SPLITS if not (self.root / s).is_dir()]
        if missing:
            raise DatasetError(f"{self.root} lacks the split folder(s) {missing}; expected {list(SPLITS)}.")
        scans = {split: scan_split(self.root / split) for split in SPLITS}
        mismatch = class_mismatch({split: classes for split, (classes, _) in scans.items()})
        if mismatch:
            raise DatasetError(f"class folders differ between splits in {self.root}: {mismatch}.")
        self.class_names = scans["train"][0]
        samples = {split: s for split, (_, s) in scans.items()}
        bad = self._find_bad_images([path for split in SPLITS for path, _ in samples[split]])
        if bad and self.hparams.strict:
            listing = "\n".join(f"  {p}: {why}" for p, why in bad)
            raise DatasetError(f"{len(bad)} unreadable image(s) and data.strict=true:\n{listing}")
        if bad:
            log.warning("skipping %d unreadable file(s):", len(bad))
            for path, why in bad:
                log.warning("  %s: %s", path, why)
        bad_paths = {p for p, _ in bad}
        self.samples = {split: [s for s in samples[split] if s[0] not in bad_paths] for split in SPLITS}
        self.skipped = bad
        self._check_class_sizes()
        log.info(
            "%d classes; images: %s",
            len(self.class_names),
            ", ".join(f"{s} {len(v)}" for s, v in self.samples.items()),
        )

    def _check_class_sizes(self) -> None:
        """A class folder without a usable image in any split is an error: training could never learn it,
        or validation and test could never judge it. A class with fewer training images than a batch is a
        warning: it is in only that many of each epoch's batches, and its accuracy rests on so few images."""
        counts = {split: Counter(index for _, index in self.samples[split]) for split in SPLITS}
        empty = [
            self.root / split / name
            for split in SPLITS
            for index, name in enumerate(self.class_names)
            if not counts[split][index]
        ]
        if empty:
            listing = ", ".join(str(p) for p in empty[:10]) + (
                f" and {len(empty) - 10} more" if len(empty) > 10 else ""
            )
            raise DatasetError(
                f"class folder(s) without a usable image: {listing}; "
                "add images, or remove the class from every split"
            )
        batch = self.hparams.batch_size
        small = {
            name: counts["train"][i] for i, name in enumerate(self.class_names) if counts["train"][i] < batch
        }
        if small:
            listing = ", ".join(f"{name} ({n})" for name, n in list(small.items())[:10])
            log.warning(
                "%d class(es) have fewer training images than one batch (data.batch_size=%d): %s; each is in "
                "at most that many batches an epoch, and its accuracy rests on those few images",
                len(small),
                batch,
                listing,
            )

    def _find_bad_images(self, paths: list[Path]) -> list[tuple[Path, str]]:
        """Unreadable images among `paths`; the answer is cached under `cache_dir`, keyed like the feature
        cache (every path, size and modification time), so an unchanged dataset is not decoded again."""
        cache = Path(self.hparams.cache_dir) / f"scan-{files_key(paths, 'scan-v1')[:20]}.json"
        try:
            return [(Path(p), why) for p, why in json.loads(cache.read_text())]
        except (OSError, ValueError):
            pass
        bad = self._decode_all(paths)
        try:
            atomic_write_text(cache, json.dumps([(str(p), why) for p, why in bad]))
        except OSError as exc:  # a read-only cache folder costs time, not correctness
            log.info("image scan not cached (%s)", exc)
        return bad

    def _decode_all(self, paths: list[Path]) -> list[tuple[Path, str]]:
        with ThreadPoolExecutor(max_workers=max(1, self.hparams.num_workers)) as pool:
            problems = list(
                track(
                    pool.map(image_problem, paths),
                    total=len(paths),
                    description="checking images",
                    transient=True,
                )
            )
        return [(p, why) for p, why in zip(paths, problems, strict=True) if why]

    def dataset(self, split: str, augment: bool | None = None) -> ImageList:
        size = self.hparams.image_size
        augment = self.hparams.augment if augment is None else augment
        transform = train_transform(size) if split == "train" and augment else eval_transform(size)
        return ImageList(self.samples[split], transform)

    def use_features(self, feature_sets: dict[str, TensorDataset]) -> None:
        """Serve these splits as cached backbone features (`FeatureCache.build`) instead of images."""
        self.feature_sets.update(feature_sets)

    def _loader(self, split: str) -> DataLoader:
        if split in self.feature_sets:  # tensors in memory: worker processes would only add overhead
            return DataLoader(
                self.feature_sets[split], batch_size=self.hparams.batch_size, shuffle=split == "train"
            )
        workers = self.hparams.num_workers
        return DataLoader(
            self.dataset(split),
            batch_size=self.hparams.batch_size,
            shuffle=split == "train",
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.hparams.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
