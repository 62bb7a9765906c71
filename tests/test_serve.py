"""The local endpoint: readiness, every input type, bad input, concurrency, start-up failures, the page."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from dogbreed.serving import server as server_module
from dogbreed.serving.adapters import toolkit
from dogbreed.serving.server import create_app
from dogbreed.serving.service import MicroBatcher, Service, decode
from launch.replay.stacks import free_port
from tests.conftest import REAL_DOGS, REPO
from tests.test_images import encode, png_claiming

PHOTOS = sorted(REAL_DOGS.glob("*.jpg"))


def wait_ready(url: str, process: subprocess.Popen | None = None, timeout: float = 300) -> None:
    """Until `/ping` is 200; `timeout` is a hang guard (a loaded machine takes a while), not a speed check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read()}")
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server never became ready")


def start_server(model: Path, *args: str, tmpdir: Path | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if tmpdir:
        tmpdir.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "dogbreed.serve", str(model), "--port", str(port), *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)} if tmpdir else None,
    )
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(exported_model: Path) -> Iterator[str]:
    """`python -m dogbreed.serve` in a subprocess, with a 1 MiB body limit."""
    process, url = start_server(exported_model, "--max-body-mb", "1")
    try:
        wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def in_process(app) -> Iterator[str]:
    """uvicorn in a thread, so a test can look at the app's state."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    app.state.server = server
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def post(url: str, body: bytes, content_type: str, **kwargs) -> httpx.Response:
    return httpx.post(
        f"{url}/invocations", content=body, headers={"Content-Type": content_type}, timeout=30, **kwargs
    )


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_ping_is_503_until_the_model_has_answered_a_warm_up(trained_model: Path, monkeypatch) -> None:
    release, calls = threading.Event(), []

    def slow_service(model_dir: Path) -> Service:
        release.wait(20)
        predictor = Service(model_dir)
        real_probabilities = predictor.probabilities
        predictor.probabilities = lambda pixels: calls.append(len(pixels)) or real_probabilities(pixels)
        return predictor

    monkeypatch.setattr(server_module, "Service", slow_service)
    with in_process(create_app(trained_model)) as url:
        assert httpx.get(f"{url}/ping").status_code == 503
        assert post(url, PHOTOS[0].read_bytes(), "image/jpeg").status_code == 503
        release.set()
        wait_ready(url)
        assert calls == [1], "exactly one warm-up prediction before ready"
        assert post(url, PHOTOS[0].read_bytes(), "image/jpeg").status_code == 200


def test_every_content_type(server: str) -> None:
    jpeg = PHOTOS[0].read_bytes()
    b64 = base64.b64encode(jpeg).decode()
    png = encode(Image.open(PHOTOS[0]), "PNG")
    cases = [
        (jpeg, "image/jpeg"),
        (png, "image/png"),
        (jpeg, "application/x-image"),
        (jpeg, "application/octet-stream"),
        (json.dumps({"image": b64}).encode(), "application/json"),
        (npy(np.zeros((2, 3, 64, 64), np.float32)), "application/x-npy"),
    ]
    for body, kind in cases:
        response = post(server, body, kind)
        assert response.status_code == 200, (kind, response.text)
        assert response.headers["content-type"] == "application/json"
        first = response.json()[0]
        assert len(first) == 5 and {"breed", "label", "index", "probability", "confident"} == set(first[0])
    batch = post(server, json.dumps({"instances": [{"b64": b64}] * 3}).encode(), "application/json")
    assert len(batch.json()) == 3
    assert len(post(server, jpeg, "image/jpeg", params={"top_k": 2}).json()[0]) == 2
    assert (
        len(
            httpx.post(
                f"{server}/invocations", content=jpeg, headers={"Content-Type": "image/jpeg", "X-Top-K": "3"}
            ).json()[0]
        )
        == 3
    )


def odd_images() -> dict[str, bytes]:
    photo = Image.open(PHOTOS[1])
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [photo.convert("P"), photo.convert("L").convert("P")]
    sixteen = Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257)
    return {
        "grayscale": encode(photo.convert("L"), "PNG"),
        "16-bit": encode(sixteen, "PNG"),
        "palette": encode(photo.convert("P"), "PNG"),
        "rgba": encode(photo.convert("RGBA"), "PNG"),
        "la": encode(photo.convert("LA"), "PNG"),
        "cmyk": encode(photo.convert("CMYK"), "JPEG"),
        "exif-rotated": encode(photo, "JPEG", exif=exif),
        "animated-gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "webp": encode(photo, "WEBP"),
    }


def test_unusual_images_are_converted_and_classified(server: str) -> None:
    for name, body in odd_images().items():
        response = post(server, body, "application/octet-stream")
        assert response.status_code == 200, (name, response.text)
        assert len(response.json()[0]) == 5


def test_bad_input_is_a_clear_4xx_and_the_server_keeps_serving(server: str) -> None:
    jpeg = PHOTOS[0].read_bytes()
    cases = [
        (b"", "image/jpeg", 400, "empty body"),
        (b"hello", "image/jpeg", 400, "not an image"),
        (jpeg[: len(jpeg) // 3], "image/jpeg", 400, "truncated or corrupt"),
        (b"hello", "text/plain", 415, "unsupported content type"),
        (b'{"image": ', "application/json", 400, "malformed JSON"),
        (b'{"image": "**not base64**"}', "application/json", 400, "malformed base64"),
        (npy(np.zeros((1, 3, 32, 32), np.float32)), "application/x-npy", 400, "N×3×64×64"),
        (npy(np.zeros((1, 3, 64, 64), np.int64)), "application/x-npy", 400, "float32"),
        (b"x" * (2 * 2**20), "image/jpeg", 413, "over the limit"),
        (png_claiming(8000, 8000), "image/png", 413, "over the limit"),
        (png_claiming(100_000, 100_000), "image/png", 413, "decompression bomb"),
    ]
    for body, kind, status, message in cases:
        response = post(server, body, kind)
        assert response.status_code == status, (message, response.text)
        assert message in response.json()["error"]
    assert post(server, jpeg, "image/jpeg").status_code == 200


def test_32_concurrent_requests_are_answered_correctly_in_shared_batches(exported_model: Path) -> None:
    predictor = toolkit.model_fn(str(exported_model))
    expected = {p.name: predictor.predict(decode(p.read_bytes(), "image/jpeg"))[0] for p in PHOTOS}
    app = create_app(exported_model, max_batch_size=8, max_wait_ms=20)
    with in_process(app) as url:
        wait_ready(url)
        jobs = [PHOTOS[i % len(PHOTOS)] for i in range(32)]
        with ThreadPoolExecutor(32) as pool:
            responses = list(pool.map(lambda p: post(url, p.read_bytes(), "image/jpeg"), jobs))
        batch_sizes = app.state.dogbreed["batcher"].batch_sizes
    for photo, response in zip(jobs, responses, strict=True):
        assert response.status_code == 200
        got = response.json()[0]
        assert [p["label"] for p in got] == [p["label"] for p in expected[photo.name]]
        assert got[0]["probability"] == pytest.approx(expected[photo.name][0]["probability"], abs=1e-4)
    assert sum(batch_sizes) == 32 and max(batch_sizes) > 1, batch_sizes


def test_a_batch_holds_at_most_max_batch_size_images_and_a_larger_request_runs_in_parts() -> None:
    """Queued before the batcher runs (no timing involved): requests of 3, 3 and 3 images with a batch of
    4 are three runs, not one of 9; a 9-image request runs as 4, 4 and 1; every answer is its own
    request's rows, in order."""

    def echo(batch: list[np.ndarray]) -> list[np.ndarray]:
        return list(batch)

    async def main() -> tuple[list[np.ndarray], list[int]]:
        batcher = MicroBatcher(echo, max_batch_size=4)
        requests = [np.full(3, 1.0), np.full(3, 2.0), np.full(3, 3.0), np.arange(9.0)]
        answers = [asyncio.ensure_future(batcher.submit(pixels)) for pixels in requests]
        await asyncio.sleep(0)  # all queued
        loop = asyncio.ensure_future(batcher.serve_forever())
        try:
            return await asyncio.wait_for(asyncio.gather(*answers), 60), batcher.batch_sizes
        finally:
            loop.cancel()
            batcher.executor.shutdown()

    answers, sizes = asyncio.run(main())
    assert sizes == [3, 3, 3, 4, 4, 1]
    assert [a.tolist() for a in answers] == [[1.0] * 3, [2.0] * 3, [3.0] * 3, list(np.arange(9.0))]


def test_a_failing_handler_is_a_500_without_a_traceback_and_the_server_keeps_serving(
    exported_model: Path, monkeypatch, caplog
) -> None:
    app = create_app(exported_model)
    with in_process(app) as url:
        wait_ready(url)
        service = app.state.dogbreed["service"]

        def broken(pixels: np.ndarray) -> np.ndarray:
            raise RuntimeError(f"runtime exploded in {__file__}")

        monkeypatch.setattr(service, "probabilities", broken)
        with caplog.at_level("ERROR", logger="dogbreed"):
            failed = post(url, PHOTOS[0].read_bytes(), "image/jpeg")
        assert failed.status_code == 500
        assert failed.json() == {"error": "internal error: RuntimeError"}
        assert "Traceback" not in failed.text and __file__ not in failed.text
        assert "runtime exploded" in caplog.text and "Traceback" in caplog.text  # the log has the whole story
        monkeypatch.undo()
        assert post(url, PHOTOS[0].read_bytes(), "image/jpeg").status_code == 200
        assert httpx.get(f"{url}/ping").status_code == 200


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_broken_model_fails_start_up_and_never_turns_healthy(trained_model: Path, tmp_path: Path, damage):
    import shutil

    broken = tmp_path / "model"
    shutil.copytree(trained_model, broken)
    if damage == "missing":
        (broken / "model.pt").unlink()
    else:
        (broken / "model.pt").write_bytes(b"\x00" * 100)
    temp = tmp_path / "tmp"
    process, url = start_server(broken, tmpdir=temp)
    statuses = set()
    while process.poll() is None:
        with suppress(httpx.TransportError):
            statuses.add(httpx.get(f"{url}/ping", timeout=1).status_code)
        time.sleep(0.05)
    assert process.returncode == 2
    assert 200 not in statuses
    assert "model.pt" in process.stderr.read()
    assert list(temp.glob("dogbreed-*")) == []


def test_a_served_model_tar_is_extracted_for_the_servers_life_only(
    exported_model: Path, tmp_path: Path
) -> None:
    from dogbreed.serving.package import build_model_tar

    tar = build_model_tar(exported_model, tmp_path / "model.tar.gz")
    temp = tmp_path / "tmp"
    process, url = start_server(tar, tmpdir=temp)
    try:
        wait_ready(url, process)
        assert [p.name for p in temp.glob("dogbreed-model-*/code/inference.py")] == ["inference.py"]
    finally:
        process.terminate()
        process.wait(10)
    # each start used to leave its extracted model.tar.gz behind (ONNX Runtime's own .ses file may stay)
    assert list(temp.glob("dogbreed-*")) == []


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = Path(os.environ.get("DOGBREED_CHROMIUM", "/usr/bin/chromium"))
    if not chromium.is_file():  # `make test` installs it; a bare pytest run says how
        pytest.fail(
            f"no Chromium at {chromium}: run `make browser` (apt-get install chromium) "
            "or set DOGBREED_CHROMIUM"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield browser
        browser.close()


OVERLAPS = """
() => {  // visible siblings whose boxes intersect: the page's blocks, each result, each result's parts
  const groups = [document.querySelector("main"), document.querySelector("#results"),
                  ...document.querySelectorAll(".result"), ...document.querySelectorAll(".result > div")];
  const out = [];
  for (const parent of groups) {
    const boxes = [...parent.children]
      .filter((e) => e.offsetParent !== null && !e.classList.contains("visually-hidden"))
      .map((e) => [e.id || e.className || e.tagName, e.getBoundingClientRect()]);
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const [a, r] = boxes[i], [b, q] = boxes[j];
      const across = r.left < q.right - 1 && q.left < r.right - 1;
      const down = r.top < q.bottom - 1 && q.top < r.bottom - 1;
      if (r.width && q.width && across && down) out.push(a + " × " + b);
    }
  }
  return out;
}
"""


@pytest.mark.slow
def test_the_demo_page_in_a_real_browser(server: str, browser, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    # Playwright turns on file-chooser interception when the first listener subscribes, without waiting:
    # subscribed only by expect_file_chooser, the key press below once won that race (CI-like fresh clone)
    page.on("filechooser", lambda chooser: None)
    page.goto(server)
    assert "Which dog breed?" in page.text_content("h1")
    page.wait_for_function(
        "['int8', 'onnx', 'eager'].includes(document.querySelector('#card-runtime').textContent)"
    )
    assert page.text_content("#card-classes") == "6"
    assert "generated shapes" in page.text_content("#card-data")
    assert "arbitrary" in page.text_content("#card-warning") and page.is_visible("#card-warning")
    assert "%" in page.text_content("#card-accuracy")
    # keyboard: Tab reaches the button, Space opens the file chooser; several photos at once
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "choose"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    photos = [REAL_DOGS / "Brittany_02625.jpg", REAL_DOGS / "Labrador_retriever_06449.jpg"]
    chooser.value.set_files([str(p) for p in photos])
    rows = page.locator("[data-testid=prediction]")
    rows.nth(9).wait_for(timeout=30_000)
    assert page.locator("[data-testid=result]").count() == 2 and rows.count() == 10
    for photo in photos:  # what a screen reader announces: a named list of five breeds per photo
        assert (
            page.get_by_role("list", name=f"top breeds for {photo.name}").get_by_role("listitem").count() == 5
        )
    percents = [float(t.rstrip("%")) for t in page.locator(".pct").all_text_contents()[:5]]
    assert percents == sorted(percents, reverse=True) and 0 < sum(percents) <= 100.1
    assert all(name.strip() for name in page.locator(".breed").all_text_contents())
    assert all("answered in" in t and " ms" in t for t in page.locator(".timing").all_text_contents())
    assert page.evaluate(OVERLAPS) == []
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
