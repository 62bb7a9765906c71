"""`model.tar.gz` for SageMaker: the `model/` folder with the handler and the library beside it.

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
from dogbreed.atomic import atomic_file
from dogbreed.container import HANDLER, container_requirements
from dogbreed.errors import exit_on_user_error
from dogbreed.serving.artifact import CLASSES, CONFIG, INT8, ONNX, WEIGHTS, read_artifact

PACKAGE_DIR = Path(dogbreed.__file__).resolve().parent
HANDLER_SOURCE = '''"""SageMaker entry point: dogbreed.serving.inference's handlers (shipped beside it)."""

from dogbreed.serving.inference import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
'''


def add_inference_code(model_dir: str | Path, offline: bool = False) -> Path:
    """Write `code/` (handler, requirements, the dogbreed library) into a model folder."""
    code = Path(model_dir) / "code"
    if code.exists():
        shutil.rmtree(code)
    shutil.copytree(PACKAGE_DIR, code / "dogbreed", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (code / HANDLER).write_text(HANDLER_SOURCE)
    (code / "requirements.txt").write_text(
        "" if offline else container_requirements("endpoint", "the endpoint")
    )
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
