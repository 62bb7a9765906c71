"""Issue 21: data that cannot train is refused; faults say what happened and what was kept.

The full-disk and read-only cases are real: small tmpfs mounts (the tests run as root here). Where mounting
is impossible the test says so in its skip reason.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from dogbreed import DogBreedDataModule
from dogbreed.data.download import download
from dogbreed.data.features import save
from dogbreed.data.synthetic import generate_dataset
from dogbreed.errors import DatasetError, StorageError
from tests.conftest import FAST_OVERRIDES, HANG_GUARD_S, TINY, run_train


def mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True
    )
    if done.returncode != 0:
        why = done.stderr.strip() or done.returncode
        pytest.skip(reason=f"cannot mount a tmpfs here to fill a disk for real ({why})")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 70 MB tmpfs: one ResNet18 checkpoint (45 MB) fits, a second one beside it does not."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=70m")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def tiny_copy(tmp_path: Path, **counts: int) -> Path:
    return generate_dataset(tmp_path / "data", **{**TINY, **counts})


def test_an_empty_class_folder_in_any_split_is_refused_naming_it(tmp_path: Path) -> None:
    root = tiny_copy(tmp_path)
    folder = sorted((root / "valid").iterdir())[2]
    for image in folder.iterdir():
        image.unlink()
    dm = DogBreedDataModule(
        str(root),
        batch_size=4,
        num_workers=0,
        image_size=64,
        expected_classes=None,
        cache_dir=str(tmp_path / "c"),
    )
    with pytest.raises(DatasetError, match="without a usable image") as err:
        dm.setup()
    assert str(folder) in str(err.value)


def test_a_class_smaller_than_a_batch_is_a_warning_naming_it(tmp_path: Path, caplog) -> None:
    root = tiny_copy(tmp_path)
    small = sorted((root / "train").iterdir())[0]
    for image in sorted(small.iterdir())[3:]:
        image.unlink()
    dm = DogBreedDataModule(
        str(root),
        batch_size=6,
        num_workers=0,
        image_size=64,
        expected_classes=None,
        cache_dir=str(tmp_path / "c"),
    )
    with caplog.at_level(logging.WARNING):
        dm.setup()
    (warning,) = [
        r.getMessage() for r in caplog.records if "fewer training images than one batch" in r.getMessage()
    ]
    assert f"{small.name} (3)" in warning and "data.batch_size=6" in warning


def train_args(tiny_root: Path, run_dir: Path, tmp_path: Path) -> list[str]:
    return [
        "+experiment=demo",
        f"data.root={tiny_root}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
        *FAST_OVERRIDES,
        "checkpoint.every_n_steps=1",
    ]


@pytest.mark.slow
def test_a_full_disk_stops_with_the_path_the_size_and_the_checkpoint_kept_and_resumes(
    tiny_root: Path, tmp_path: Path, small_disk: Path
) -> None:
    run_dir = small_disk / "run"
    args = train_args(tiny_root, run_dir, tmp_path)
    full = run_train(args)
    text = full.stdout + full.stderr
    assert full.returncode == 2, text[-3000:]
    assert "Traceback" not in text
    (line,) = [line for line in text.splitlines() if "cannot write checkpoint" in line]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert "the disk is full (needs about 45 MB" in line and " free)" in line, line
    assert f"the last complete checkpoint {last} (step 1) stays" in line, line
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name != "last.ckpt"], (
        "nothing half-written"
    )
    assert torch.load(last, weights_only=True)["global_step"] == 1
    assert not (run_dir / "model").exists()

    grown = subprocess.run(
        ["mount", "-o", "remount,size=400m", str(small_disk)], capture_output=True, text=True
    )
    assert grown.returncode == 0, grown.stderr
    again = run_train(args)  # the same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {last} (epoch 0, step 1)" in (run_dir / "train.log").read_text()
    assert (run_dir / "complete.json").is_file()


def test_a_data_root_whose_parent_is_a_file_is_one_line_before_hydra_runs(
    tiny_root: Path, tmp_path: Path
) -> None:
    import re

    from dogbreed.errors import StorageError
    from dogbreed.train import check_command_line

    (tmp_path / "file").write_text("a file, not a folder")
    root = tmp_path / "file" / "dogImages"  # a data.root still to fetch
    with pytest.raises(StorageError, match=f"^cannot write data.root .*{re.escape(str(root))}: ") as err:
        check_command_line([*train_args(tiny_root, tmp_path / "run", tmp_path), f"data.root={root}"])
    assert "is a file, not a folder" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_an_unwritable_run_dir_is_one_line_and_nothing_is_created(tiny_root: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    for run_dir, why in [(tmp_path / "file" / "run", "is a file, not a folder")]:
        result = run_train(train_args(tiny_root, run_dir, tmp_path), timeout=HANG_GUARD_S)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"cannot write the run dir (hydra.run.dir) {run_dir}" in result.stderr and why in result.stderr
    read_only = tmp_path / "ro"
    mount_tmpfs(read_only, "ro,size=1m")
    try:
        result = run_train(train_args(tiny_root, read_only / "run", tmp_path), timeout=HANG_GUARD_S)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"{read_only} is on a read-only file system" in result.stderr
        assert not (read_only / "run").exists()
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "tiny-disk"
    mount_tmpfs(disk, "size=1m")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_while_caching_features_says_so(tiny_disk: Path) -> None:
    features = torch.zeros(1024, 512)  # 2 MB
    with pytest.raises(
        StorageError, match=r"cannot write feature cache .*: the disk is full \(needs about 2 MB"
    ):
        save(tiny_disk / "train-x.pt", "key", features, torch.zeros(1024, dtype=torch.long))
    assert list(tiny_disk.iterdir()) == [], "nothing half-written"


def test_a_full_disk_while_downloading_keeps_the_part_and_says_so(tiny_disk: Path) -> None:
    payload = b"x" * 3_000_000

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(StorageError) as err:
            download(f"http://127.0.0.1:{server.server_port}/dogImages.zip", tiny_disk / "dogImages.zip")
    finally:
        server.shutdown()
    said = str(err.value)
    assert "cannot write the download" in said and "the disk is full (needs about 3 MB" in said
    assert "the next run resumes it" in said and (tiny_disk / "dogImages.zip.part").is_file()
