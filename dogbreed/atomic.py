"""Atomic writes: a reader sees the old thing or the complete new one, never half of it.

A write that fails for lack of space or permission is one `StorageError` line (`dogbreed.storage.faults`):
the path, the space needed when the caller knows it (`needed`) and what stays (`kept`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dogbreed.storage import faults


@contextmanager
def atomic_dir(target: str | Path, what: str = "") -> Iterator[Path]:
    """Yield a temporary sibling of `target`; on success it replaces `target`, on error it vanishes."""
    target = Path(target)
    with faults(target, what):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            yield tmp
            _publish(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.replace(tmp, target)
        return
    old = tmp.with_name(tmp.name.replace(".tmp-", ".old-"))
    try:
        os.replace(target, old)
    except OSError:
        # `target` is a mount point (SageMaker's /opt/ml/model): replace its files one by one.
        for item in tmp.iterdir():
            dest = target / item.name
            if dest.is_dir():
                shutil.rmtree(dest)
            shutil.move(item, dest)
        return
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(
    path: str | Path, what: str = "", needed: int | None = None, kept: Callable[[], str | None] | None = None
) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`, on error removed."""
    path = Path(path)
    with faults(path, what, needed, kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; these files are meant to be read
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
