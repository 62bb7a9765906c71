"""Checkpoints that survive being killed: atomic writes, resume from the newest complete one, SIGTERM.

A checkpoint is written to a temporary file and renamed into place, so a kill mid-write never leaves a
file that looks complete; on start the newest checkpoint that loads is resumed and any that do not are
skipped with a warning. SIGTERM (what SageMaker sends to stop or reclaim a spot job) saves `last.ckpt`
at the next batch boundary and the run exits 0. A resumed run keeps the `metrics.csv` rows logged up to
its checkpoint.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.loggers.csv_logs import _ExperimentWriter
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dogbreed.atomic import atomic_file

log = logging.getLogger(__name__)


def checkpoint_callbacks(cfg: DictConfig) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """The best checkpoint by `checkpoint.monitor`, and `last.ckpt` at every epoch end and every
    `checkpoint.every_n_steps` steps (a killed or preempted job loses at most that many)."""
    best = ModelCheckpoint(
        dirpath=cfg.paths.checkpoints,
        filename="epoch{epoch:03d}-val_acc{val/acc:.4f}",
        auto_insert_metric_name=False,
        monitor=cfg.checkpoint.monitor,
        mode=cfg.checkpoint.mode,
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,  # one last.ckpt, shared with the every-N-steps saver
    )
    every_n_steps = ModelCheckpoint(
        dirpath=cfg.paths.checkpoints,
        save_top_k=0,
        save_last=True,
        every_n_train_steps=cfg.checkpoint.every_n_steps,
        enable_version_counter=False,  # the same last.ckpt as the epoch-end one, not last-v1.ckpt
    )
    return best, every_n_steps


def tensor_bytes(value: Any) -> int:
    """Bytes of every tensor in a nested checkpoint: about the size it takes on disk."""
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(v) for v in value)
    return 0


def last_complete(folder: Path) -> str:
    """What a failed checkpoint write leaves: the newest checkpoint that loads (writes are atomic)."""
    found = newest_complete(folder)
    if found is None:
        return "no earlier checkpoint exists; free space and run the same command to start again"
    path, checkpoint = found
    return (
        f"the last complete checkpoint {path} (step {checkpoint.get('global_step')}) stays; "
        "free space and run the same command to resume from it"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` into a temporary file next to the target, then `os.replace`; a full disk stops the run
    with one line: the path, the size needed and the last complete checkpoint, which resumes."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        needed = tensor_bytes(checkpoint)
        with atomic_file(path, "checkpoint", needed, lambda: last_complete(Path(path).parent)) as tmp:
            torch.save(checkpoint, tmp)


def loads(path: Path) -> dict[str, Any] | None:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        log.warning("skipping checkpoint %s: it does not load (%s)", path, str(exc).splitlines()[0][:120])
        return None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        log.warning("skipping checkpoint %s: not a Lightning checkpoint", path)
        return None
    return checkpoint


def newest_complete(folder: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in `folder` that loads completely, loaded, or None."""
    candidates = sorted(Path(folder).glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for path in candidates:
        checkpoint = loads(path)
        if checkpoint is not None:
            return path, checkpoint
    return None


def find_resume_checkpoint(folder: str | Path) -> tuple[Path, int] | None:
    """The newest checkpoint in `folder` that loads completely and its global step, or None."""
    found = newest_complete(folder)
    if found is None:
        return None
    path, checkpoint = found
    log.info(
        "resuming from %s (epoch %s, step %s)", path, checkpoint.get("epoch"), checkpoint.get("global_step")
    )
    return path, int(checkpoint.get("global_step", 0))


class ResumingCSVLogger(CSVLogger):
    """`metrics.csv` in `save_dir`, keeping the rows of the run it resumes up to the checkpoint's step.

    Lightning's CSVLogger deletes the file it finds, so a resumed run used to lose its history. Rows
    logged after the checkpoint are dropped (the resumed run logs those steps again), and so are test
    rows: the resumed run tests its best checkpoint again at the end.
    """

    def __init__(self, save_dir: str | Path, resume_step: int | None) -> None:
        super().__init__(save_dir, name="", version="")
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            kept = self.rows_to_keep()
            super().experiment.metrics[:0] = kept  # written with the first save, header included
        return self._experiment

    def rows_to_keep(self) -> list[dict[str, str]]:
        path = Path(self.log_dir) / _ExperimentWriter.NAME_METRICS_FILE
        if self.resume_step is None or not path.is_file():
            return []
        with path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        return [
            {key: value for key, value in row.items() if value != ""}
            for row in rows
            if int(row["step"]) <= self.resume_step and not any(row[k] for k in row if k.startswith("test/"))
        ]


class SaveOnSigterm(pl.Callback):
    """When Lightning stops for SIGTERM, save `last.ckpt` before the process goes."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / "last.ckpt"

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)
            log.warning("SIGTERM: saved %s at step %d; run again to resume", self.path, trainer.global_step)
