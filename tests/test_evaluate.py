"""`python -m dogbreed.evaluate` and the evaluation every training run writes: numbers that match the run,
runtimes and endpoints that agree with the model, calibration that helps, abstention, bad input."""

from __future__ import annotations

import base64
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from dogbreed.data.synthetic import generate_dataset
from dogbreed.evaluation import calibration, metrics
from dogbreed.evaluation.command import main
from dogbreed.serving.service import softmax
from launch.replay.stacks import free_port
from tests.conftest import FAST_OVERRIDES, REAL_DOGS, compose_train
from tests.test_serve import start_server, wait_ready

SERVED_KEYS = {"breed", "label", "index", "probability", "confident"}


def evaluate(*args: str) -> dict:
    """The command in this process; its metrics.json."""
    main(list(args))
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "evaluation" / "metrics.json").read_text())


def fails(capsys: pytest.CaptureFixture, out: Path, *args: str) -> str:
    """The command exits 2 with one line on stderr and writes nothing; returns the line."""
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(out)])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not (out / "evaluation").exists() and not list(out.glob(".evaluation*"))
    return lines[0]


def test_a_training_run_writes_its_evaluation_and_top1_is_test_acc(
    trained_model: Path, tmp_path: Path
) -> None:
    run_dir = trained_model.parent
    written = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    config = json.loads((trained_model / "config.json").read_text())
    assert written["top1"] == pytest.approx(config["metrics"]["test_acc"], abs=1e-6)
    assert written["images"] == 18 and written["temperature"] == config["calibration"]["temperature"]
    for key in ("top5", "balanced_accuracy", "macro_f1", "ece", "ece_raw", "nll", "images_per_s", "runtime"):
        assert key in written
    assert written["model"]["weights_sha256"] and len(written["model"]["classes"]) == 6
    assert 0 <= written["unseen"]["not_confident"] <= 1 and written["unseen"]["images"] > 0
    rows = (run_dir / "evaluation" / "predictions.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 18 and rows[0].startswith("file,true_breed,confident,breed_1,probability_1")
    page = (run_dir / "evaluation" / "report.html").read_text()
    assert "data:image/png;base64" in page and "src='http" not in page and "Most confused pairs" in page
    assert (run_dir / "evaluation" / "report.md").is_file()
    # the command on the run dir (data root from config.json) measures the same
    again = evaluate(str(run_dir), "--out", str(tmp_path), "--workers", "0")
    assert again["top1"] == written["top1"] and again["ece"] == pytest.approx(written["ece"], abs=1e-6)


def test_eager_against_onnx_and_int8_agree(exported_model: Path, tmp_path: Path) -> None:
    for runtime in ("onnx", "int8") if (exported_model / "model.int8.onnx").is_file() else ("onnx",):
        m = evaluate(
            f"{exported_model}:eager", "--against", f"{exported_model}:{runtime}", "--out", str(tmp_path)
        )
        assert m["runtime"] == "eager" and m["against"]["runtime"] == runtime
        assert m["against"]["top1_agreement"] >= 0.99
        assert abs(m["against"]["top1_delta"]) <= 0.005


def test_the_served_endpoint_answers_as_the_model(exported_model: Path, tmp_path: Path) -> None:
    process, url = start_server(exported_model)
    try:
        wait_ready(url, process)
        m = evaluate(
            str(exported_model), "--url", url, "--against", str(exported_model), "--out", str(tmp_path)
        )
        answer = httpx.post(
            f"{url}/invocations",
            content=sorted(REAL_DOGS.glob("*.jpg"))[0].read_bytes(),
            headers={"Content-Type": "image/jpeg"},
        ).json()
    finally:
        process.terminate()
        process.wait(10)
    assert m["target"]["name"] == url and m["against"]["top1_agreement"] >= 0.99
    assert abs(m["against"]["top1_delta"]) <= 0.005
    assert all(set(p) == SERVED_KEYS for p in answer[0])
    threshold = json.loads((exported_model / "config.json").read_text())["calibration"][
        "confidence_threshold"
    ]
    assert [p["confident"] for p in answer[0]] == [p["probability"] >= threshold for p in answer[0]]


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) (calibrated by construction), served as logits 4z: over-confident."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, 10))
    truth = softmax(logits)
    labels = np.array([rng.choice(10, p=p) for p in truth])
    return 4 * logits, labels


def test_temperature_scaling_does_not_raise_ece_when_over_confident() -> None:
    valid, valid_labels = overconfident(2000, 0)
    test, test_labels = overconfident(2000, 1)
    fitted = calibration.calibrate(valid, valid_labels)
    assert fitted["temperature"] == pytest.approx(4, rel=0.15)
    calibrated = softmax(test / fitted["temperature"])
    assert metrics.ece(calibrated, test_labels) < metrics.ece(softmax(test), test_labels) / 2
    assert (calibrated.argmax(1) == test.argmax(1)).all()  # accuracy unchanged
    served = softmax(valid / fitted["temperature"])
    kept = served.max(1) >= fitted["confidence_threshold"]
    assert (served[kept].argmax(1) == valid_labels[kept]).mean() >= 0.95
    assert calibration.calibrate(valid, valid_labels, fit=False)["temperature"] == 1.0
    assert compose_train(["model.calibrate=false"]).model.calibrate is False


@pytest.mark.parametrize("scale", [0.3, 1.0, 25.0])  # under-confident, about right, float32-saturated
def test_the_fitted_temperature_is_the_nll_minimum_of_the_logits(scale: float) -> None:
    """The temperature is the one a dense grid finds where the NLL is lowest. Fitted on float32
    probabilities instead (floored where they underflow), a saturated model's is a few percent low."""
    rng = np.random.default_rng(2)
    logits = rng.normal(0, scale, (300, 10)) + 2 * scale * np.eye(10)[rng.integers(0, 10, 300)]
    labels = np.array([rng.choice(10, p=p) for p in softmax(logits / scale)])
    fitted = calibration.fit_temperature(logits, labels)
    grid = np.exp(np.linspace(np.log(0.02), np.log(50), 20001))
    best = grid[np.argmin([calibration.logit_nll(logits / t, labels) for t in grid])]
    assert fitted == pytest.approx(best, rel=2e-3)
    floored = calibration.log_probabilities(softmax(logits).astype(np.float32))
    assert (abs(calibration.fit_temperature(floored, labels) / best - 1) > 0.02) == (scale == 25.0)


def test_a_near_duplicate_pair_tops_the_confusion_list(tmp_path: Path) -> None:
    from dogbreed.training.run import run

    root = generate_dataset(tmp_path / "twins", 4, 24, 6, 8, seed=3, twin=True)
    cfg = compose_train(
        ["+experiment=demo", f"data.root={root}", f"paths.run_dir={tmp_path / 'run'}", *FAST_OVERRIDES]
    )
    cfg.trainer.max_epochs = 4
    run(cfg)
    m = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    classes = json.loads((tmp_path / "run" / "model" / "classes.json").read_text())
    assert m["confused_pairs"][0]["classes"] == classes[:2], m["confused_pairs"]


def test_held_out_classes_are_measured(trained_model: Path, tmp_path: Path) -> None:
    unseen = generate_dataset(tmp_path / "unseen", 3, 1, 1, 4, seed=5, first_class=6) / "test"
    m = evaluate(str(trained_model), "--unseen", str(unseen), "--out", str(tmp_path), "--workers", "0")
    assert m["unseen"]["images"] == 12 and m["unseen"]["not_confident"] in {i / 12 for i in range(13)}
    halves = m["unseen"]["auroc"] * 2 * 18 * 12  # of 18 × 12 known–unseen pairs, ties counting half
    assert 0 <= halves <= 2 * 18 * 12 and halves == pytest.approx(round(halves))


def test_separation_is_the_share_of_known_unseen_pairs_ranked_right() -> None:
    known = softmax(np.log([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]]))
    unseen = softmax(np.log([[0.7, 0.3], [0.5, 0.5]]))
    # (0.9 beats both) + (0.6 beats 0.5) + (0.5 ties 0.5): 3.5 of 6 pairs
    assert metrics.separation(known, unseen) == pytest.approx(3.5 / 6)


def test_an_unreadable_image_is_named_and_skipped(
    trained_model: Path, tiny_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_root / "test", data / "test")
    broken = next((data / "test").iterdir()) / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    m = evaluate(str(trained_model), "--data", str(data), "--out", str(tmp_path), "--workers", "0")
    assert m["images"] == 18 and [s["file"] for s in m["skipped"]] == [str(broken)]
    assert str(broken) in caplog.text  # a warning line (on stderr, outside pytest)


class Refusing(BaseHTTPRequestHandler):
    """A SageMaker-contract server that is healthy and refuses every invocation."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(415)
        self.end_headers()
        self.wfile.write(json.dumps({"error": "we take no JSON"}).encode())

    def log_message(self, *args: object) -> None:
        pass


def test_bad_input_is_one_line_exit_2_and_nothing_written(
    trained_model: Path, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    assert "split folder" in fails(capsys, out, str(trained_model), "--split", "nosuch")
    assert "does not exist" in fails(capsys, out, str(tmp_path / "no-model"))
    other = tmp_path / "other"
    shutil.copytree(tiny_root / "test", other / "test")
    first = next(iter(sorted((other / "test").iterdir())))
    first.rename(first.with_name("999.Not_a_breed"))
    assert "differ from the model's" in fails(capsys, out, str(trained_model), "--data", str(other))
    assert "ready" in fails(capsys, out, str(trained_model), "--url", f"http://127.0.0.1:{free_port()}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        line = fails(capsys, out, str(trained_model), "--url", url, "--workers", "0")
    finally:
        server.shutdown()
    assert "refused" in line and "415" in line and "we take no JSON" in line


def test_request_bodies_are_batched_within_the_size_limit() -> None:
    from dogbreed.evaluation.targets import MAX_REQUEST_BYTES, request_bodies

    images = [b"x" * (MAX_REQUEST_BYTES // 3)] * 7
    bodies = list(request_bodies(images, 6))
    assert [n for n, _ in bodies] == [2, 2, 2, 1]
    first = json.loads(bodies[0][1])
    assert first["top_k"] == 6 and base64.b64decode(first["instances"][0]["b64"]) == images[0]
