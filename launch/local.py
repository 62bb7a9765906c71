"""`instance=local`: the SageMaker flow with this machine in place of the service (no Docker, no AWS).

Training runs our entry point under the container contract in an `/opt/ml`-style tree (`input/config/*.json`,
the data channel, `SM_*` variables, `model/`, `output/`) and packs `model.tar.gz` as SageMaker would;
deploy serves it with `dogbreed.serve`; invoke sends a photo over HTTP.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dogbreed.errors import DogBreedError
from dogbreed.processes import run_child


def opt_ml_tree(root: Path, hyperparameters: dict[str, Any], data_dir: Path) -> dict[str, str]:
    """Lay out `root` like a training container's /opt/ml; returns the `SM_*` variables of that job."""
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    # SageMaker passes every hyperparameter as a string
    (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hyperparameters.items()}))
    (config / "inputdataconfig.json").write_text(
        json.dumps(
            {
                "training": {
                    "TrainingInputMode": "File",
                    "S3DistributionType": "FullyReplicated",
                    "RecordWrapperType": "None",
                }
            }
        )
    )
    # host "localhost": other names make the toolkit wait for DNS
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "localhost", "hosts": ["localhost"], "network_interface_name": "lo"})
    )
    channel = root / "input" / "data" / "training"
    channel.parent.mkdir(parents=True, exist_ok=True)
    if not channel.exists():
        channel.symlink_to(data_dir.resolve(), target_is_directory=True)
    for folder in ("model", "output/data", "checkpoints"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return {
        "SM_CHANNEL_TRAINING": str(channel),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_NUM_GPUS": "0",
        "SM_HOSTS": json.dumps(["localhost"]),
        "SM_CURRENT_HOST": "localhost",
        "SAGEMAKER_BASE_DIR": str(root),
    }


def train(cfg: DictConfig, data_dir: Path, run_dir: Path) -> Path:
    """Run the training job here; returns its `model.tar.gz`."""
    from dogbreed.serving.package import build_model_tar
    from launch.training import hyperparameters

    values = hyperparameters(cfg)
    tree = run_dir / "opt_ml"
    env = {**os.environ, **opt_ml_tree(tree, values, data_dir)}
    args = [arg for name, value in values.items() for arg in (f"--{name}", str(value))]
    command = [sys.executable, "-m", "dogbreed.train", *args]
    if run_child(command, env=env) != 0:
        raise DogBreedError(f"local training job failed; its output is in {tree / 'output'}")
    return build_model_tar(tree / "model", run_dir / "model.tar.gz")


def latest_model(outputs: Path) -> Path:
    found = sorted(outputs.glob("**/model.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DogBreedError(f"no model.tar.gz under {outputs}; run instance=local train=default first")
    return found[-1]


def deploy(cfg: DictConfig) -> None:
    """Serve a local training job's model.tar.gz (the newest, or deploy.training_job=<path>) until Ctrl-C."""
    model = Path(cfg.deploy.training_job) if cfg.deploy.training_job else latest_model(Path("outputs/launch"))
    print(f"serving {model} on http://127.0.0.1:{cfg.local_port} (Ctrl-C stops it)", flush=True)
    run_child([sys.executable, "-m", "dogbreed.serve", str(model), "--port", str(cfg.local_port)])


def invoke(cfg: DictConfig) -> None:
    from dogbreed.serving.predict import content_type, format_predictions, url_classifier, wait_until_ready

    url = cfg.invoke if str(cfg.invoke).startswith("http") else f"http://127.0.0.1:{cfg.local_port}"
    image = Path(cfg.image or "")
    if not image.is_file():
        raise DogBreedError(f"image={cfg.image} does not exist")
    wait_until_ready(url, 30)
    print(format_predictions(str(image), url_classifier(url)(image.read_bytes(), content_type(image), 5)))
