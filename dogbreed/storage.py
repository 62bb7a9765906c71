"""Storage faults told as what happened and what was kept: a full disk, a read-only or missing folder.

`faults` wraps a write: a full disk (`OSError: [Errno 28]`, or torch.save's `[enforce fail at
inline_container.cc…] unexpected pos …`), a read-only file system, a permission, a parent that is a file or
missing becomes one `StorageError` line naming the path, the space needed when the writer knows it, the
space free, and what stays. `unwritable` says before a run starts why a folder cannot be written.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dogbreed.errors import StorageError, fault


def existing_folder(path: Path) -> Path:
    """`path` or its nearest ancestor that exists."""
    return next(p for p in (path, *path.parents) if p.exists())


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(existing_folder(path)).free
    except OSError:
        return None


def size(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


@contextmanager
def faults(
    path: str | Path, what: str = "", needed: int | None = None, kept: Callable[[], str | None] | None = None
) -> Iterator[None]:
    """A storage fault inside the block as one StorageError line; `kept()` says what stays (e.g. the last
    complete checkpoint), asked only when it happens."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        why = fault(exc)
        if why is None:
            raise
        path = Path(path)
        space = []
        if needed:
            space.append(f"needs about {size(needed)}")
        if (free := free_bytes(path)) is not None and why.startswith("the disk"):
            space.append(f"{size(free)} free")
        said = f"cannot write {what + ' ' if what else ''}{path}: {why}"
        said += f" ({', '.join(space)})" if space else ""
        stays = kept() if kept else None
        said += f"; {stays}" if stays else ""
        raise StorageError(said + "; nothing was half-written") from exc


def unwritable(folder: str | Path) -> str | None:
    """Why files cannot be created in `folder` (which may not exist yet), or None when they can."""
    folder = Path(folder).absolute()
    there = existing_folder(folder)
    if not there.is_dir():
        return f"{there} is a file, not a folder"
    if os.access(there, os.W_OK | os.X_OK):
        return None
    if os.statvfs(there).f_flag & os.ST_RDONLY:
        return f"{there} is on a read-only file system"
    return f"{there} is not writable for this user"
