"""The trained-model artifact `model/`: `model.pt` (a plain state_dict), `classes.json`, `config.json`.

It is what serving, export and deployment read; it needs neither Lightning nor the training config, and
imports torch only to read or write weights (so that choosing a runtime needs none).
`resolve_model` turns whatever a user passes as MODEL (the folder, a `model.tar.gz`, a checkpoint) into one.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from dogbreed import __version__
from dogbreed.atomic import atomic_dir
from dogbreed.errors import DogBreedError

if TYPE_CHECKING:
    from torch import nn

WEIGHTS, CLASSES, CONFIG = "model.pt", "classes.json", "config.json"
ONNX, INT8 = "model.onnx", "model.int8.onnx"  # optional, written by dogbreed.export


def write_artifact(
    net: nn.Module,
    class_names: list[str],
    out_dir: str | Path,
    image_size: int,
    metrics: dict[str, float] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> Path:
    """Write `out_dir` atomically: built in a temporary folder and renamed into place when complete.

    `data` says what the model was trained on (`root`, `generated`, `images` per split): the demo page shows
    it beside every answer, so a model of generated shapes never passes for a dog expert."""
    import torch

    from dogbreed.data.transforms import preprocessing_config

    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    config = {
        "format_version": 1,
        "architecture": "resnet18",
        "num_classes": len(class_names),
        "preprocessing": preprocessing_config(image_size),
        "metrics": metrics or {},
        "hyperparameters": hyperparameters or {},
        "data": data or {},
        "dogbreed_version": __version__,
    }
    with atomic_dir(out_dir) as tmp:
        torch.save(state, tmp / WEIGHTS)
        (tmp / CLASSES).write_text(json.dumps(class_names, indent=1), encoding="utf-8")
        (tmp / CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out_dir


def model_card(config: dict[str, Any], runtime: str) -> dict[str, Any]:
    """What answers: architecture, breeds, runtime, test accuracy, training data, and a warning when the
    training data were not photos."""
    data = config.get("data") or {}
    images = data.get("images", {})
    count = f"{images['train']:,} training images" if "train" in images else "training images not recorded"
    if not data:
        described = "not recorded in this model"
    elif data.get("generated"):
        described = f"generated shapes in the dogImages layout, not photos ({count})"
    else:
        described = f"{data.get('root', 'a dataset')} ({count})"
    warning = (
        "This model learned generated shapes, not dogs: the breeds it names for a real photo are arbitrary."
        if data.get("generated")
        else None
    )
    size = config["preprocessing"]["image_size"]
    return {
        "architecture": f"{config.get('architecture', '?')}, {size} px input",
        "num_classes": config.get("num_classes"),
        "runtime": runtime,
        "test_acc": (config.get("metrics") or {}).get("test_acc"),
        "data": described,
        "warning": warning,
    }


def _load(path: Path, loader: Callable[[Path], Any]) -> Any:
    try:
        return loader(path)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DogBreedError(f"{path} is corrupt or unreadable: {first_line}") from exc


def read_description(model_dir: str | Path) -> tuple[list[str], dict[str, Any]]:
    """(class names, config) of a `model/` folder, without torch; errors name the missing or bad file."""
    model_dir = Path(model_dir)
    missing = [n for n in (WEIGHTS, CLASSES, CONFIG) if not (model_dir / n).is_file()]
    if missing:
        raise DogBreedError(f"{model_dir} is not a dogbreed model: {', '.join(missing)} missing.")
    read_json = lambda p: json.loads(p.read_text(encoding="utf-8"))  # noqa: E731
    return _load(model_dir / CLASSES, read_json), _load(model_dir / CONFIG, read_json)


def read_artifact(model_dir: str | Path) -> tuple[nn.Module, list[str], dict[str, Any]]:
    """(eval-mode network, class names, config) from a `model/` folder; errors name the bad file."""
    import torch
    from torchvision.models import resnet18

    model_dir = Path(model_dir)
    classes, config = read_description(model_dir)
    state = _load(model_dir / WEIGHTS, lambda p: torch.load(p, map_location="cpu", weights_only=True))
    net = resnet18(num_classes=len(classes))
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise DogBreedError(
            f"{model_dir / WEIGHTS} does not fit a resnet18 with {len(classes)} classes (classes.json)."
        ) from exc
    return net.eval(), classes, config


def safe_extract_tar(archive: Path, target: Path) -> None:
    """Extract regular files and folders only; absolute names, `..` and links are refused."""
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise DogBreedError(f"{archive}: entry {member.name!r} escapes the target directory.")
                if not (member.isfile() or member.isdir()):
                    raise DogBreedError(f"{archive}: entry {member.name!r} is a link or special file.")
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DogBreedError(f"{archive} is not a readable .tar.gz ({exc}).") from exc


def resolve_model(path: str | Path, workdir: Path) -> Path:
    """A `model/` folder for MODEL: the folder, a `model.tar.gz` extracted, or a checkpoint exported."""
    path = Path(path)
    if path.is_dir():
        return path
    if not path.is_file():
        raise DogBreedError(
            f"{path} does not exist; MODEL is a model/ folder, a model.tar.gz or a .ckpt file."
        )
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        safe_extract_tar(path, workdir)
        return workdir
    if path.suffix == ".ckpt":
        return checkpoint_to_artifact(path, workdir)
    raise DogBreedError(f"{path}: MODEL must be a model/ folder, a model.tar.gz or a .ckpt file.")


def checkpoint_to_artifact(checkpoint: Path, out: Path) -> Path:
    """A Lightning checkpoint of ours as a `model/` folder (Lightning imported here: serving lacks it)."""
    import torch

    from dogbreed.model import DogBreedClassifier

    try:
        model = DogBreedClassifier.load_from_checkpoint(checkpoint, map_location="cpu")
        image_size = (
            torch.load(checkpoint, map_location="cpu", weights_only=True)
            .get("datamodule_hyper_parameters", {})
            .get("image_size", 224)
        )
    except Exception as exc:
        raise DogBreedError(f"{checkpoint} is not a loadable dogbreed checkpoint ({exc}).") from exc
    if out.exists():
        shutil.rmtree(out)
    return write_artifact(model.net, model.class_names, out, image_size)
