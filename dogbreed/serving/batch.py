"""Many photos at once with a local model, and `predictions.csv`, the file batch transform writes too.

`predict_folder` decodes in DataLoader workers (the CPU-bound part: JPEG decoding and the evaluation
transform) while this process runs the model on batches; a photo that does not decode is a row with its
error, never the end of the run. `launch.commands.transform` writes the same columns from a SageMaker
batch transform job's `.out` files, so the two files compare line by line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dogbreed.data.images import content_type

COLUMNS = ("object", "top5", "confidence", "error")
Row = tuple[str, list[dict[str, Any]] | None, str | None]  # object, predictions or None, error or None


def images_in(folder: Path) -> list[Path]:
    """Every file under `folder` but hidden ones, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


class _Photos:
    """The photos as model inputs (decoded in the worker that loads them), or the reason one failed."""

    def __init__(self, paths: list[Path], transform: Any) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str | None]:
        from dogbreed.serving.service import BadInput, decode

        path = self.paths[index]
        try:
            request = decode(path.read_bytes(), content_type(path))
            return index, np.stack([self.transform(image) for image in request.images]), None
        except (BadInput, OSError) as exc:
            return index, None, str(exc)


def predict_folder(
    service: Any, paths: list[Path], batch_size: int = 32, workers: int = 2, top_k: int = 5
) -> Iterator[tuple[int, list[dict[str, Any]] | None, str | None]]:
    """(index, top-k or None, error or None) per photo, in batches of `batch_size`."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _Photos(paths, service.transform),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=list,  # items stay as they are: a failed photo has no pixels to stack
    )
    for batch in loader:
        good = [(i, pixels) for i, pixels, _ in batch if pixels is not None]
        if good:
            probabilities = service.probabilities(np.concatenate([pixels for _, pixels in good]))
            for (i, _), prediction in zip(good, service.top_k(probabilities, top_k), strict=True):
                yield i, prediction, None
        for i, _, error in batch:
            if error is not None:
                yield i, None, error


def write_predictions(path: Path, rows: list[Row]) -> Path:
    """`object, top5, confidence, error`: the top 5 breeds joined by `;`, the top-1 probability."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for name, predictions, error in sorted(rows, key=lambda r: r[0]):
            if predictions is None:
                writer.writerow([name, "", "", error or "failed"])
            else:
                top = ";".join(p["breed"] for p in predictions)
                writer.writerow([name, top, f"{predictions[0]['probability']:.6f}", ""])
    return path
