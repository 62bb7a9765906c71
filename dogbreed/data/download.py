"""Fetching dogImages: resumable streamed download, zip checks, safe extraction, structure check.

Only a complete, verified tree is moved to the dataset root, so an interrupted or bad download never
leaves something that looks like a dataset.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import shutil
import stat
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from dogbreed.errors import DatasetError, DataUnavailableError, StorageError
from dogbreed.storage import faults, size

log = logging.getLogger(__name__)

DOGIMAGES_URL = "https://s3-us-west-1.amazonaws.com/udacity-aind/dog-project/dogImages.zip"
SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CHUNK = 1 << 20


def _fetch_once(url: str, part: Path, timeout: float) -> int | None:
    """One HTTP request appending to `part` (with a Range header when it already holds bytes).

    Returns the expected total size when the server says it, else None.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with urlopen(Request(url, headers=headers), timeout=timeout) as resp:
        if offset and resp.status != 206:  # the server ignored the range: start over
            offset = 0
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        kept = lambda: f"{part} keeps the {size(part.stat().st_size)} received; the next run resumes it"  # noqa: E731
        with (
            faults(part, "the download", int(length) if length is not None else None, kept),
            part.open("ab" if offset else "wb") as out,
            Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
            ) as progress,
        ):
            task = progress.add_task(f"download {part.name.removesuffix('.part')}", total=total)
            progress.update(task, completed=offset)
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                progress.update(task, advance=len(chunk))
    return total


def download(url: str, dest: Path, retries: int = 5, timeout: float = 30.0) -> Path:
    """Stream `url` into `dest` via `dest.part`, resuming with HTTP Range after a cut connection.

    An unreachable URL fails at once (no bytes ever arrived); retries are only for transfers that
    made progress and then broke.
    """
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        before = part.stat().st_size if part.exists() else 0
        try:
            total = _fetch_once(url, part, timeout)
            size = part.stat().st_size
            if total is not None and size != total:
                raise http.client.IncompleteRead(b"", total - size)
            os.replace(part, dest)
            return dest
        except HTTPError as exc:
            if exc.code == 416 and before:  # nothing left to fetch: the .part is whole
                os.replace(part, dest)
                return dest
            raise DataUnavailableError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
        except StorageError:
            raise  # the disk, not the network: retrying cannot help
        except (URLError, OSError, http.client.HTTPException) as exc:
            progressed = part.exists() and part.stat().st_size > before
            if not progressed or attempt == retries:
                reason = getattr(exc, "reason", None) or exc
                raise DataUnavailableError(f"the dataset URL {url} is unreachable ({reason}).") from exc
            log.warning("download interrupted (%s); resuming from byte %d", exc, part.stat().st_size)
            time.sleep(min(2**attempt, 10) * 0.1)
    raise AssertionError("unreachable")


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a zip after checking every CRC; entries escaping `target` or being links are rejected."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{archive} is not a valid zip archive ({exc}).") from exc
    with zf:
        root = target.resolve()
        for info in zf.infolist():
            name = PurePosixPath(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DatasetError(f"{archive}: entry {info.filename!r} is a link; refusing to extract.")
            inside = (root / info.filename).resolve().is_relative_to(root)
            if name.is_absolute() or ".." in name.parts or not inside:
                raise DatasetError(f"{archive}: entry {info.filename!r} escapes the target directory.")
        try:
            bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DatasetError(f"{archive} is corrupt ({exc}).") from exc
        if bad is not None:
            raise DatasetError(f"{archive} is corrupt: entry {bad!r} fails its CRC check.")
        needed = sum(info.file_size for info in zf.infolist())
        with faults(target, "the extracted dataset", needed, lambda: f"the archive {archive} stays"):
            zf.extractall(target)


def find_dataset_root(tree: Path) -> Path:
    """The folder holding train/valid/test: the tree itself or one level down (`dogImages/`)."""
    candidates = [tree, *sorted(p for p in tree.iterdir() if p.is_dir())]
    for candidate in candidates:
        if all((candidate / split).is_dir() for split in SPLITS):
            return candidate
    found = [p.name for p in candidates[1:]]
    raise DatasetError(f"the archive does not contain {'/'.join(SPLITS)} folders (found: {found}).")


def split_counts(root: Path) -> dict[str, tuple[int, int]]:
    """(classes, images) per split, counting image files by suffix."""
    counts = {}
    for split in SPLITS:
        class_dirs = [d for d in (root / split).iterdir() if d.is_dir()]
        images = sum(1 for d in class_dirs for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        counts[split] = (len(class_dirs), images)
    return counts


def verify_structure(root: Path, expected_classes: int | None) -> dict[str, tuple[int, int]]:
    counts = split_counts(root)
    if expected_classes is not None:
        wrong = {s: c for s, (c, _) in counts.items() if c != expected_classes}
        if wrong:
            raise DatasetError(f"expected {expected_classes} class folders in each split, found {wrong}.")
    for split, (classes, images) in counts.items():
        log.info("%-5s %3d classes %5d images", split, classes, images)
    return counts


def fetch_dataset(url: str, root: Path, expected_classes: int | None = 133) -> Path:
    """Download, check, extract and verify the archive at `url`, then move the tree to `root`."""
    root = Path(root)
    work = root.parent / f".{root.name}.download"
    work.mkdir(parents=True, exist_ok=True)
    archive = work / PurePosixPath(url).name
    if not archive.exists():
        try:
            download(url, archive)
        except DataUnavailableError:
            with contextlib.suppress(OSError):
                work.rmdir()  # only when empty: a partial download stays for the next run to resume
            raise
    extract_dir = Path(tempfile.mkdtemp(prefix="extract-", dir=work))
    try:
        try:
            safe_extract(archive, extract_dir)
        except DatasetError as exc:
            archive.unlink()
            raise DatasetError(f"{exc} The archive was deleted; run again to download it afresh.") from exc
        tree = find_dataset_root(extract_dir)
        verify_structure(tree, expected_classes)
        os.replace(tree, root)
    finally:
        shutil.rmtree(extract_dir, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    log.info("dataset ready in %s", root)
    return root
