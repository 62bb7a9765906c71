"""`model.tar.gz` for SageMaker, and turning any MODEL argument into a `model/` folder.

    python -m dogbreed.package MODEL_DIR OUT.tar.gz [--offline]

Layout (SageMaker PyTorch inference): the model files at the root, `code/inference.py` (our handler),
`code/requirements.txt` (only what the PyTorch container lacks) and `code/dogbreed/` (the library the
handler imports), so the endpoint needs no internet to start. `--offline` omits the requirements for
network-isolated endpoints: the handler then serves with eager PyTorch.
"""

from __future__ import annotations

import argparse
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import dogbreed
from dogbreed.artifact import CLASSES, CONFIG, INT8, ONNX, WEIGHTS, read_artifact, write_artifact
from dogbreed.errors import DogBreedError, exit_on_user_error
from dogbreed.fileio import atomic_file

PACKAGE_DIR = Path(dogbreed.__file__).resolve().parent
HANDLER = '''"""SageMaker entry point: the handlers of dogbreed.inference (shipped beside this file)."""

from dogbreed.inference import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
'''
REQUIREMENTS = (
    "# the PyTorch inference container has torch, torchvision, Pillow and numpy\nonnxruntime>=1.17\n"
)


def add_inference_code(model_dir: str | Path, offline: bool = False) -> Path:
    """Write `code/` (handler, requirements, the dogbreed library) into a model folder."""
    code = Path(model_dir) / "code"
    if code.exists():
        shutil.rmtree(code)
    shutil.copytree(PACKAGE_DIR, code / "dogbreed", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (code / "inference.py").write_text(HANDLER)
    (code / "requirements.txt").write_text("" if offline else REQUIREMENTS)
    return code


def build_model_tar(model_dir: str | Path, out: str | Path, offline: bool = False) -> Path:
    """Write `out` (atomically) from a `model/` folder."""
    model_dir, out = Path(model_dir), Path(out)
    read_artifact(model_dir)  # refuse to package something that will not load
    with atomic_file(out) as tmp, tempfile.TemporaryDirectory() as staging, tarfile.open(tmp, "w:gz") as tar:
        for name in (WEIGHTS, CLASSES, CONFIG, ONNX, INT8):
            if (model_dir / name).is_file():
                tar.add(model_dir / name, arcname=name)
        tar.add(add_inference_code(staging, offline), arcname="code", filter=_source_only)
    return out


def _source_only(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = PurePosixPath(info.name).name
    return None if name == "__pycache__" or name.endswith((".pyc", ".egg-info")) else info


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--offline", action="store_true", help="no code/requirements.txt entries")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        build_model_tar(args.model_dir, args.out, args.offline)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
