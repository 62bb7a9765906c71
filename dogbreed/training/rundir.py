"""A run directory's life: complete or not, and starting over without mixing two runs' files.

A finished run writes `complete.json` (its final metrics) last. Run again with the same `hydra.run.dir`,
it says so and does nothing (`resume=auto`); `resume=false` moves every file of the earlier run into
`previous-<time>/` first, so nothing of it is lost and nothing of it mixes with the new run.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dogbreed.atomic import atomic_write_text
from dogbreed.errors import StorageError
from dogbreed.storage import unwritable

log = logging.getLogger(__name__)

COMPLETE = "complete.json"
HYDRA_OWN = ".hydra"  # Hydra rewrites it at every start, before our code runs
ASIDE_PREFIX = "previous-"


def check_folders(cfg: DictConfig) -> None:
    """Before Hydra makes the run dir (`cfg` composed with Hydra's node): every folder the run will create
    can be created — the run dir, explicit checkpoint and model folders, a dataset root still to fetch."""
    folders = {"the run dir (hydra.run.dir)": cfg.hydra.run.dir}
    paths = OmegaConf.to_container(cfg.paths, resolve=False)
    for key in ("checkpoints", "model_dir"):
        if "${" not in str(paths[key]):  # set explicitly (inside a SageMaker job): not under the run dir
            folders[f"paths.{key}"] = paths[key]
    if not Path(cfg.data.root).exists():
        folders[f"data.root (to {'generate' if cfg.data.get('synthetic') else 'download'})"] = cfg.data.root
    for what, folder in folders.items():
        why = unwritable(folder)
        if why:
            raise StorageError(f"cannot write {what} {folder}: {why}; nothing was created")


def completed(run_dir: Path) -> dict[str, Any] | None:
    """The final metrics of a run that finished in `run_dir`, or None."""
    try:
        return json.loads((run_dir / COMPLETE).read_text())
    except (OSError, ValueError):
        return None


def mark_complete(run_dir: Path, metrics: dict[str, Any]) -> None:
    atomic_write_text(run_dir / COMPLETE, json.dumps(metrics, indent=2))


def hydra_log_file(run_dir: Path) -> Path | None:
    """The job log Hydra writes for this run (None outside a Hydra app, or for another run dir)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    path = Path(hydra.runtime.output_dir) / f"{hydra.job.name}.log"
    return path if path.parent.resolve() == run_dir.resolve() else None


def set_aside(run_dir: Path, checkpoints: Path, log_file: Path | None) -> Path | None:
    """Move an earlier run's files (and checkpoints kept elsewhere) into `previous-<time>/`.

    The job log is copied there and emptied: Hydra has it open for this run already.
    Returns the folder, or None when there was nothing to move.
    """
    checkpoints = checkpoints.resolve()
    inside = run_dir.is_dir() and checkpoints.is_relative_to(run_dir.resolve())
    earlier = [
        p
        for p in (run_dir.iterdir() if run_dir.is_dir() else [])
        if p.name != HYDRA_OWN and not p.name.startswith(ASIDE_PREFIX) and p != log_file
    ]
    outside = not inside and checkpoints.is_dir() and any(checkpoints.iterdir())
    has_log = log_file is not None and log_file.is_file() and log_file.stat().st_size > 0
    if not earlier and not outside:
        return None
    aside = run_dir / f"{ASIDE_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir(parents=True)
    for path in earlier:
        shutil.move(path, aside / path.name)
    if outside:
        shutil.move(checkpoints, aside / "checkpoints")
    if has_log:
        shutil.copy2(log_file, aside / log_file.name)
        with log_file.open("r+") as file:
            file.truncate(0)
    log.warning("resume=false: the earlier run's files are in %s", aside)
    return aside
