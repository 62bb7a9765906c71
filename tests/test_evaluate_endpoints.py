"""`python -m dogbreed.evaluate` through endpoints, offline: `--endpoint NAME` over boto3's sagemaker-runtime,
and `--url` a replayed deploy=default on the Ray Serve image's stack.

`--endpoint` is sent through the real client twice. To moto's server (AWS_ENDPOINT_URL), whose InvokeEndpoint
answers every request with the canned bytes `body`: what can be checked there is what moto recorded of the
requests, and that such an answer is one line. Then to the replayed endpoint's front door
(`launch.replay.front_door.front_door_app`), mounted where InvokeEndpoint posts (`/endpoints/NAME/…`)
before `dogbreed.serve` on the same model: real predictions come back through boto3, and a container that
refuses is one line naming the status.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from dogbreed.data.datamodule import scan_split
from dogbreed.errors import DogBreedError
from dogbreed.evaluation.targets import BATCH, in_flight
from dogbreed.serving.server import create_app
from launch.replay.front_door import front_door_app
from tests.conftest import HANG_GUARD_S
from tests.test_evaluate import Refusing, evaluate, fails
from tests.test_launch import moto  # noqa: F401
from tests.test_serve import in_process, wait_ready
from tests.test_stacks import endpoint, name_of, stack_processes  # noqa: F401

ENDPOINT = "dogbreed-eval-ep"


def expected_bodies(files: list[Path], top_k: int) -> list[dict[str, Any]]:
    """The `{"instances": …, "top_k": …}` batches of `files` (in the split's order), as JSON documents."""
    return [
        {
            "instances": [{"b64": base64.b64encode(f.read_bytes()).decode()} for f in files[i : i + BATCH]],
            "top_k": top_k,
        }
        for i in range(0, len(files), BATCH)
    ]


def recorder(app: Any, seen: list[dict[str, Any]]) -> Any:
    """ASGI middleware: each request's path, Content-Type and body into `seen`, then `app` answers it."""

    async def asgi(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        chunks: list[bytes] = []

        async def tee() -> dict:
            message = await receive()
            chunks.append(message.get("body", b""))
            return message

        await app(scope, tee, send)
        headers = dict(scope["headers"])
        seen.append(
            {
                "path": scope["path"],
                "type": headers.get(b"content-type", b"").decode(),
                "body": b"".join(chunks),
            }
        )

    return asgi


@contextlib.contextmanager
def invoke_endpoint_at(container: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """InvokeEndpoint for `ENDPOINT` served by the replay's front door before `container`, with boto3's
    sagemaker-runtime pointed at it (fake credentials); yields the requests it received."""
    seen: list[dict[str, Any]] = []
    app = Starlette(
        routes=[Mount(f"/endpoints/{ENDPOINT}", app=front_door_app(container))],
        middleware=[Middleware(recorder, seen=seen)],
    )
    with in_process(app) as url:
        for key, value in {
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        yield seen


def test_endpoint_predictions_come_back_through_boto3_and_the_front_door(
    exported_model: Path, tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        in_process(create_app(exported_model)) as container,
        invoke_endpoint_at(container, monkeypatch) as seen,
    ):
        wait_ready(container)
        m = evaluate(
            str(exported_model),
            "--endpoint",
            ENDPOINT,
            "--against",
            str(exported_model),
            "--out",
            str(tmp_path),
            "--workers",
            "0",
        )
    assert m["target"]["name"] == f"sagemaker:{ENDPOINT}" and m["runtime"] == "sagemaker"
    # the same model and runtime on both sides: 18 images, so ≥ 99 % means every one agrees
    assert m["images"] == 18 and m["against"]["top1_agreement"] >= 0.99 and m["against"]["top1_delta"] == 0
    assert [r["path"] for r in seen] == [f"/endpoints/{ENDPOINT}/invocations"] * 2  # 16 + 2 images
    assert {r["type"] for r in seen} == {"application/json"}
    sent = sorted((json.loads(r["body"]) for r in seen), key=lambda b: -len(b["instances"]))
    assert sent == expected_bodies([f for f, _ in scan_split(tiny_root / "test")[1]], 6)


def test_an_endpoint_that_refuses_or_is_unknown_is_one_line(
    trained_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    refusing = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=refusing.serve_forever, daemon=True).start()
    try:
        with invoke_endpoint_at(f"http://127.0.0.1:{refusing.server_address[1]}", monkeypatch):
            out = tmp_path / "out"
            line = fails(capsys, out, str(trained_model), "--endpoint", ENDPOINT, "--workers", "0")
            assert f"endpoint {ENDPOINT} refused the request" in line and "415" in line, line
            line = fails(capsys, out, str(trained_model), "--endpoint", "no-such-ep", "--workers", "0")
            assert "endpoint no-such-ep refused the request" in line and "404" in line, line
    finally:
        refusing.shutdown()


def test_moto_records_the_requests_and_its_canned_answer_is_one_line(
    moto: dict[str, str],  # noqa: F811
    trained_model: Path,
    tiny_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from moto.sagemakerruntime.models import sagemakerruntime_backends

    for key, value in moto.items():
        monkeypatch.setenv(key, value)
    backend = sagemakerruntime_backends["123456789012"]["us-east-1"]  # the server runs in this process
    backend.results.clear()
    line = fails(capsys, tmp_path / "out", str(trained_model), "--endpoint", ENDPOINT, "--workers", "0")
    assert line == f"error: sagemaker:{ENDPOINT} answered b'body', which is not JSON"
    # moto keeps each request's Accept and body (not its endpoint name nor Content-Type)
    recorded = [json.loads(base64.b64decode(key)) for answers in backend.results.values() for key in answers]
    assert recorded and {r["Accept"] for r in recorded} == {"application/json"}
    expected = expected_bodies([f for f, _ in scan_split(tiny_root / "test")[1]], 6)
    assert all(json.loads(r["Body"]) in expected for r in recorded)


@pytest.mark.slow
@pytest.mark.parametrize("endpoint", ["ray"], indirect=True)  # deploy=default: one stack start, not both
def test_a_replayed_deploy_answers_as_the_checkpoint_and_leaves_no_process(
    endpoint: SimpleNamespace,  # noqa: F811
    exported_model: Path,
    tmp_path: Path,
) -> None:
    """deploy=default replayed on the Ray stack (tests/test_stacks.py's fixture), evaluated against the
    checkpoint's eager weights; then SIGTERM to the launcher, and nothing of the stack or the evaluation
    is left."""
    ours = psutil.Process()
    before = {p.pid for p in ours.children(recursive=True)}
    m = evaluate(
        str(exported_model),
        "--url",
        endpoint.url,
        "--against",
        f"{exported_model}:eager",
        "--out",
        str(tmp_path),
    )
    assert not {p.pid for p in ours.children(recursive=True)} - before  # its dataloader workers are gone
    files = sorted(p.name for p in (tmp_path / "evaluation").iterdir())
    assert files == ["metrics.json", "predictions.csv", "report.html", "report.md", "report_files"]
    rows = (tmp_path / "evaluation" / "predictions.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + m["images"] == 1 + 18
    assert "Against " in (tmp_path / "evaluation" / "report.html").read_text()
    # The stack serves int8 (or ONNX when export's gate dropped int8). That gate compared it with eager on
    # a check set holding these very test images as served, so no more of them can differ than it counted.
    gate = json.loads((exported_model.parent / "export_report.json").read_text())
    served = "int8" if (exported_model / "model.int8.onnx").is_file() else "onnx"
    counted = round((1 - gate[served]) * gate["check_inputs"])
    assert m["against"]["runtime"] == "eager" and m["against"]["differing_images"] <= counted
    assert abs(m["against"]["top1_delta"]) <= counted / m["images"]
    processes = stack_processes(endpoint.launcher)
    endpoint.launcher.send_signal(signal.SIGTERM)
    assert endpoint.launcher.wait(HANG_GUARD_S) == 128 + signal.SIGTERM
    _, alive = psutil.wait_procs(processes, timeout=60)
    assert not [name_of(p) for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_requests_go_out_as_answers_come_back_and_a_failure_stops_the_sending() -> None:
    """At most `most` requests sent and unanswered, answers in the split's order, and after a failure
    nothing more is read or sent: an endpoint refusing everything costs a few requests, not the split."""
    answered, ahead = [], []

    def split() -> Iterator[int]:
        for i in range(20):
            ahead.append(i - len(answered))  # read (and sent) before the answers so far
            yield i

    with ThreadPoolExecutor(4) as pool:
        for answer in in_flight(pool, lambda i: i * i, split(), 3):
            answered.append(answer)
    assert answered == [i * i for i in range(20)] and max(ahead) <= 3

    read = []

    def refuse(i: int) -> int:
        raise DogBreedError("415 Unsupported Media Type")

    def counted() -> Iterator[int]:
        for i in range(20):
            read.append(i)
            yield i

    with ThreadPoolExecutor(4) as pool, pytest.raises(DogBreedError, match="415"):
        list(in_flight(pool, refuse, counted(), 3))
    assert read == [0, 1, 2]
