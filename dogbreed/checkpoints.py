"""Checkpoints that survive being killed: atomic writes, resume from the newest complete one, SIGTERM.

A checkpoint is written to a temporary file and renamed into place, so a kill mid-write never leaves a
file that looks complete; on start the newest checkpoint that loads is resumed and any that do not are
skipped with a warning. SIGTERM (what SageMaker sends to stop or reclaim a spot job) saves `last.ckpt`
at the next batch boundary and the run exits 0.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dogbreed.fileio import atomic_file

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` into a temporary file next to the target, then `os.replace`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_file(path) as tmp:
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


def find_resume_checkpoint(folder: str | Path) -> Path | None:
    """The newest checkpoint in `folder` that loads completely, or None."""
    candidates = sorted(Path(folder).glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for path in candidates:
        checkpoint = loads(path)
        if checkpoint is not None:
            log.info(
                "resuming from %s (epoch %s, step %s)",
                path,
                checkpoint.get("epoch"),
                checkpoint.get("global_step"),
            )
            return path
    return None


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
