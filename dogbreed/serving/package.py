"""`model.tar.gz` for SageMaker: the `model/` folder with the library and each serving image's entry.

    python -m dogbreed.package MODEL_DIR OUT.tar.gz [--offline]

Layout: the model files at the root; `config.yaml` (what the Ray Serve image runs: `serve run` of the
adapter `dogbreed.serving.adapters.ray_serve`); `code/inference.py` (what the PyTorch image's toolkit
loads: `dogbreed.serving.adapters.toolkit`); `code/dogbreed/` (the library both import) and
`code/requirements.txt` (only what the images lack). One archive serves on either image, with no internet
needed at start-up beyond the requirements. `--offline` omits them for network-isolated endpoints: the
model is then served with eager PyTorch.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import dogbreed
from dogbreed import command_line
from dogbreed.atomic import atomic_file
from dogbreed.container import HANDLER, SERVE_CONFIG, container_requirements
from dogbreed.errors import exit_on_user_error
from dogbreed.serving.artifact import CLASSES, CONFIG, INT8, ONNX, WEIGHTS, read_artifact

PACKAGE_DIR = Path(dogbreed.__file__).resolve().parent
HANDLER_SOURCE = '''"""The PyTorch image's entry point: dogbreed's toolkit adapter (the library beside it)."""

from dogbreed.serving.adapters.toolkit import model_fn, transform_fn

__all__ = ["model_fn", "transform_fn"]
'''
RAY_SERVE_APP = """# Ray Serve's application: the Ray Serve image runs `serve run /opt/ml/model/config.yaml`.
# Replicas, threads and batching come from the model's Environment (DOGBREED_SERVE_*). No access log: a
# line per request costs the replica CPU, and with RAY_SERVE_THROUGHPUT_OPTIMIZED it reaches only Ray's log
# files, not the container's output (CloudWatch); errors are still logged.
applications:
  - name: dogbreed
    route_prefix: /
    import_path: dogbreed.serving.adapters.ray_serve:build
    logging_config:
      enable_access_log: false
"""


def add_inference_code(model_dir: str | Path, offline: bool = False) -> Path:
    """Write `code/` (handler, requirements, the dogbreed library) and the Ray Serve `config.yaml` into a
    model folder; returns `code/`."""
    code = Path(model_dir) / "code"
    if code.exists():
        shutil.rmtree(code)
    shutil.copytree(PACKAGE_DIR, code / "dogbreed", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (code / HANDLER).write_text(HANDLER_SOURCE)
    (Path(model_dir) / SERVE_CONFIG).write_text(RAY_SERVE_APP)
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
        tar.add(Path(staging) / SERVE_CONFIG, arcname=SERVE_CONFIG)
    return out


def _source_only(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = PurePosixPath(info.name).name
    return None if name == "__pycache__" or name.endswith((".pyc", ".egg-info")) else info


def main(argv: list[str] | None = None) -> None:
    parser = command_line.parser("dogbreed.package", __doc__)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--offline", action="store_true", help="no code/requirements.txt entries")
    args = parser.parse_args(argv)
    with exit_on_user_error(verbose=args.verbose):
        build_model_tar(args.model_dir, args.out, args.offline)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
