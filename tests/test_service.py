"""The serving service: one composition for sync and async callers, where k comes from, errors, runtimes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dogbreed.data.images import BadInput
from dogbreed.serving.service import Service, decode, requested_top_k
from tests.conftest import REAL_DOGS, REPO

PHOTO = REAL_DOGS / "Labrador_retriever_06449.jpg"
ATTRIBUTES = "x-amzn-sagemaker-custom-attributes"


@pytest.fixture(scope="module")
def service(trained_model: Path) -> Service:
    return Service(trained_model)


def test_top_k_comes_from_the_query_then_x_top_k_then_custom_attributes() -> None:
    assert requested_top_k({}, {}) is None  # the body's "top_k" or the default decides
    assert requested_top_k({ATTRIBUTES: "trace=abc; top_k=3"}, {}) == 3
    assert requested_top_k({ATTRIBUTES: "trace=abc,top_k=2,x=y"}, {}) == 2
    assert requested_top_k({ATTRIBUTES: "trace=abc"}, {}) is None
    assert requested_top_k({"x-top-k": "4", ATTRIBUTES: "top_k=3"}, {}) == 4
    assert requested_top_k({"x-top-k": "4"}, {"top_k": "1"}) == 1
    for attributes, message in [
        ("top_k=three", "top_k must be a positive integer"),
        ("top_k=0", "top_k must be a positive integer"),
        ("x" * 1025, "at most 1024 ASCII characters"),
        ("top_k=3; name=ü", "at most 1024 ASCII characters"),
    ]:
        with pytest.raises(BadInput, match=message) as err:
            requested_top_k({ATTRIBUTES: attributes}, {})
        assert err.value.status == 400


def answer(service: Service, body: bytes, headers: dict[str, str], query: dict[str, str] | None = None):
    """`Service.answer` driven as an async shell with its own batching would: a list in, a list out."""

    async def infer(pixels: np.ndarray) -> np.ndarray:
        return service.infer_batch([pixels])[0]

    return asyncio.run(service.answer(body, headers, query or {}, infer=infer))


def test_sync_and_async_callers_get_the_same_answer(service: Service) -> None:
    jpeg = PHOTO.read_bytes()
    result = answer(service, jpeg, {"Content-Type": "image/jpeg", ATTRIBUTES: "top_k=3"})
    assert result.status == 200 and result.content_type == "application/json"
    assert result.inference_ms is not None and result.inference_ms >= 0
    expected = service.predict(decode(jpeg, "image/jpeg", 3))
    got = json.loads(result.body)
    assert [p["label"] for p in got[0]] == [p["label"] for p in expected[0]] and len(got[0]) == 3
    assert got[0][0]["probability"] == pytest.approx(expected[0][0]["probability"], abs=1e-6)


def test_failures_are_error_answers(service: Service, monkeypatch) -> None:
    bad = answer(service, b"hello", {"content-type": "image/jpeg"})
    assert bad.status == 400 and "not an image" in json.loads(bad.body)["error"]
    assert answer(service, PHOTO.read_bytes(), {"accept": "image/png"}).status == 406
    monkeypatch.setattr(service, "pixels", lambda request: 1 / 0)
    broken = answer(service, PHOTO.read_bytes(), {"content-type": "image/jpeg"})
    assert (broken.status, json.loads(broken.body)) == (500, {"error": "internal error: ZeroDivisionError"})


def test_a_batch_is_split_back_per_request(service: Service) -> None:
    pixels = service.pixels(decode(PHOTO.read_bytes(), "image/jpeg"))
    parts = service.infer_batch([pixels, np.concatenate([pixels] * 3), pixels])
    assert [len(p) for p in parts] == [1, 3, 1]
    np.testing.assert_allclose(parts[1][2], parts[0][0], atol=1e-5)
    np.testing.assert_allclose(parts[0].sum(axis=1), 1, atol=1e-5)


def test_choosing_a_runtime_imports_no_torch(exported_model: Path) -> None:
    probe = (
        "import sys; from dogbreed.serving.service import runtime_for; "
        f"print(runtime_for({str(exported_model)!r}, 'auto'), 'torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    runtime, imported = result.stdout.split()
    assert runtime in ("int8", "onnx") and imported == "False"


def test_the_predict_command_answers_through_the_service(
    trained_model: Path, service: Service, tmp_path: Path, capsys
) -> None:
    from dogbreed.serving.predict import main

    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"hello")
    with pytest.raises(SystemExit) as exit_:
        main([str(trained_model), str(PHOTO), str(junk), "--top-k", "3", "--json"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 1 and f"{junk}: error: body is not an image" in err
    (result,) = json.loads(out)
    assert result["predictions"] == service.predict(decode(PHOTO.read_bytes(), "image/jpeg", 3))[0]


@pytest.mark.parametrize("spinning", [True, False])
def test_onnx_runtimes_threads_busy_wait_only_when_asked(
    exported_model: Path, spinning: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`spinning=False` (deploy=default's DOGBREED_SERVE_SPINNING=0) reaches ONNX Runtime's session."""
    import onnxruntime as ort

    sessions = []
    real = ort.InferenceSession
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **kw: sessions.append(a[1]) or real(*a, **kw))
    served = Service(exported_model, runtime="onnx", threads=1, spinning=spinning)
    assert served.probabilities(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, len(served.classes))
    entry = sessions[0].get_session_config_entry("session.intra_op.allow_spinning")
    assert entry == ("1" if spinning else "0")
