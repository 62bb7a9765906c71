"""prepare_data's download path against a local HTTP server serving zips the tests build."""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dogbreed import DogBreedDataModule
from dogbreed.errors import DatasetError, DataUnavailableError


class ZipServer(ThreadingHTTPServer):
    payload = b""
    cut_next = False  # send half of the next response, then drop the connection
    range_headers: list[str | None]


class Handler(BaseHTTPRequestHandler):
    server: ZipServer

    def do_GET(self) -> None:
        data = self.server.payload
        rng = self.headers.get("Range")
        self.server.range_headers.append(rng)
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.server.cut_next:
            self.server.cut_next = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ZipServer]:
    srv = ZipServer(("127.0.0.1", 0), Handler)
    srv.range_headers = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()


def url(srv: ZipServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/dogImages.zip"


def dataset_zip(
    tree: Path, splits=("train", "valid", "test"), extra: dict[str, bytes] | None = None
) -> bytes:
    """A zip of `tree` under a top folder `dogImages/`, as the real archive is laid out."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(tree.rglob("*")):
            rel = path.relative_to(tree)
            if path.is_file() and rel.parts[0] in splits:
                zf.write(path, f"dogImages/{rel.as_posix()}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def fetch(srv: ZipServer, root: Path, expected: int = 6) -> DogBreedDataModule:
    dm = DogBreedDataModule(str(root), num_workers=0, image_size=64, url=url(srv), expected_classes=expected)
    dm.prepare_data()
    return dm


def test_download_extracts_verifies_and_moves_into_place(server, tiny_root: Path, tmp_path: Path, caplog):
    server.payload = dataset_zip(tiny_root)
    root = tmp_path / "dogImages"
    with caplog.at_level("INFO"):
        dm = fetch(server, root)
    dm.setup()
    assert len(dm.class_names) == 6 and len(dm.samples["train"]) == 48
    assert "train   6 classes    48 images" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dogImages"]  # no leftovers
    assert server.range_headers == [None]


def test_a_cut_connection_is_resumed_with_a_range_request(server, tiny_root: Path, tmp_path: Path) -> None:
    server.payload = dataset_zip(tiny_root)
    server.cut_next = True
    fetch(server, tmp_path / "dogImages")
    half = len(server.payload) // 2
    assert server.range_headers == [None, f"bytes={half}-"]
    assert (tmp_path / "dogImages" / "test").is_dir()


def test_corrupt_zip_is_a_clear_error_and_is_deleted(server, tiny_root: Path, tmp_path: Path) -> None:
    data = bytearray(dataset_zip(tiny_root))
    data[len(data) // 3 : len(data) // 3 + 64] = bytes(64)  # damage a member's compressed bytes
    server.payload = bytes(data)
    with pytest.raises(DatasetError, match=r"corrupt.*run again to download it afresh"):
        fetch(server, tmp_path / "dogImages")
    assert not (tmp_path / "dogImages").exists()
    assert not list((tmp_path / ".dogImages.download").glob("*.zip"))


def test_not_a_zip_is_a_clear_error(server, tmp_path: Path) -> None:
    server.payload = b"<html>Access denied</html>"
    with pytest.raises(DatasetError, match="not a valid zip archive"):
        fetch(server, tmp_path / "dogImages")


@pytest.mark.parametrize("entry", ["../evil.txt", "/etc/evil.txt", "dogImages/../../evil.txt"])
def test_zip_slip_entries_are_rejected(server, tiny_root: Path, tmp_path: Path, entry: str) -> None:
    server.payload = dataset_zip(tiny_root, extra={entry: b"pwned"})
    with pytest.raises(DatasetError, match="escapes the target directory"):
        fetch(server, tmp_path / "x" / "dogImages")
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (tmp_path / "x" / "dogImages").exists()


def test_symlink_entries_are_rejected(server, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        link = zipfile.ZipInfo("dogImages/train/link")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    server.payload = buf.getvalue()
    with pytest.raises(DatasetError, match="is a link"):
        fetch(server, tmp_path / "dogImages")


def test_wrong_structure_is_a_clear_error(server, tiny_root: Path, tmp_path: Path) -> None:
    server.payload = dataset_zip(tiny_root, splits=("train", "valid"))
    with pytest.raises(DatasetError, match="does not contain train/valid/test"):
        fetch(server, tmp_path / "dogImages")
    assert not (tmp_path / "dogImages").exists()


def test_wrong_class_count_is_a_clear_error(server, tiny_root: Path, tmp_path: Path) -> None:
    server.payload = dataset_zip(tiny_root)
    with pytest.raises(DatasetError, match="expected 133 class folders in each split"):
        fetch(server, tmp_path / "dogImages", expected=133)
    assert not (tmp_path / "dogImages").exists()


def test_unreachable_url_fails_fast_with_the_url(tmp_path: Path) -> None:
    dm = DogBreedDataModule(str(tmp_path / "d"), url="http://127.0.0.1:9/dogImages.zip")
    with pytest.raises(DataUnavailableError, match=r"http://127.0.0.1:9/dogImages.zip is unreachable"):
        dm.prepare_data()
