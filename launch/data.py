"""The dataset a job trains on: prepared here (downloaded or generated when missing), then synced to S3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dogbreed.training.config import compose_training


def prepared_data(cfg: DictConfig, run_dir: Path) -> Path:
    """The experiment's dataset folder, downloaded or generated here if missing (`data.root=` wins)."""
    from hydra.utils import instantiate

    roots = [o for o in cfg.overrides if o.startswith("data.root=")]
    train_cfg = compose_training([f"+experiment={cfg.experiment}", *roots, f"paths.run_dir={run_dir}"])
    instantiate(train_cfg.data, _convert_="all").prepare_data()
    return Path(train_cfg.data.root)


def data_channel(cfg: DictConfig, boto: Any, run_dir: Path) -> str:
    """The dataset synced to `s3://<bucket>/<prefix>/data/<name>/` (idempotent); returns the URI."""
    from launch.aws import sync_to_s3

    root = prepared_data(cfg, run_dir)
    return sync_to_s3(boto, root, cfg.bucket, f"{cfg.prefix}/data/{root.name}")
