"""The dataset a job trains on: prepared here (downloaded or generated when missing), then synced to S3.

A dry run prepares nothing: a missing dataset is reported with where a real run would get it from and where
it would upload it, so a dry run never downloads the 1.1 GB of dogImages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dogbreed.training.config import compose_training


def data_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """The experiment's `data` config (`data.root=` and `data.url=` on the line win)."""
    roots = [o for o in cfg.overrides if o.startswith(("data.root=", "data.url="))]
    return compose_training([f"+experiment={cfg.experiment}", *roots, f"paths.run_dir={run_dir}"]).data


def prepared_data(cfg: DictConfig, run_dir: Path) -> Path:
    """The experiment's dataset folder, downloaded or generated here if missing."""
    from hydra.utils import instantiate

    data = data_config(cfg, run_dir)
    instantiate(data, _convert_="all").prepare_data()
    return Path(data.root)


def data_channel(cfg: DictConfig, boto: Any, run_dir: Path) -> str:
    """The dataset synced to `s3://<bucket>/<prefix>/data/<name>/` (idempotent); returns the URI."""
    from launch.aws import sync_to_s3

    data = data_config(cfg, run_dir)
    root, prefix = Path(data.root), f"{cfg.prefix}/data/{Path(data.root).name}"
    if cfg.dry_run and not root.exists():
        source = f"download {data.url}" if data.get("url") else "generate it (data.synthetic)"
        print(
            f"dry run: {root} is missing; a real run would {source} there, then upload it to s3://{cfg.bucket}/{prefix}/"
        )
        return f"s3://{cfg.bucket}/{prefix}/"
    return sync_to_s3(boto, prepared_data(cfg, run_dir), cfg.bucket, prefix)
