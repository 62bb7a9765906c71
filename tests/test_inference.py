"""The serving steps, the PyTorch image's toolkit adapter, exported runtimes, model.tar.gz, MODEL."""

from __future__ import annotations

import base64
import io
import json
import re
import tarfile
import zipfile
from http import HTTPStatus
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from dogbreed import DogBreedDataModule
from dogbreed.container import CONF_DIR, MODEL_DIR
from dogbreed.data.images import BadInput
from dogbreed.errors import DogBreedError
from dogbreed.serving.adapters import toolkit
from dogbreed.serving.artifact import ONNX, resolve_model
from dogbreed.serving.export import load_pixels, top1_agreement
from dogbreed.serving.package import build_model_tar
from dogbreed.serving.service import Service, decode, encode, runtime_for
from launch.commands.deploy import container_environment
from launch.replay.stacks import ping_plugin
from tests.conftest import REAL_DOGS

PHOTO = REAL_DOGS / "Labrador_retriever_06449.jpg"


@pytest.fixture(scope="module")
def predictor(trained_model: Path) -> Service:
    return toolkit.model_fn(str(trained_model))


def predict(body: bytes | str, content_type: str, predictor) -> list[list[dict]]:
    prediction = predictor.predict(decode(body, content_type))
    payload, kind = encode(prediction, "application/json")
    assert kind == "application/json"
    return json.loads(payload)


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_every_input_type_gives_the_same_answer(predictor) -> None:
    jpeg = PHOTO.read_bytes()
    b64 = base64.b64encode(jpeg).decode()
    pixels = predictor.pixels(decode(jpeg, "image/jpeg"))
    answers = [
        predict(jpeg, "image/jpeg", predictor),
        predict(jpeg, "application/x-image", predictor),
        predict(jpeg, "application/octet-stream", predictor),
        predict(json.dumps({"image": b64}), "application/json", predictor),
        predict(npy(pixels), "application/x-npy", predictor),
        predict(npy(pixels), "application/octet-stream", predictor),  # sniffed as .npy
    ]
    for answer in answers:
        assert [p["label"] for p in answer[0]] == [p["label"] for p in answers[0][0]]
        assert answer[0][0]["probability"] == pytest.approx(answers[0][0][0]["probability"], abs=1e-5)
    top = answers[0][0]
    assert len(top) == 5  # the default top-k
    capped = predict(json.dumps({"image": b64, "top_k": 50}), "application/json", predictor)
    assert len(capped[0]) == len(predictor.classes) == 6
    assert set(top[0]) == {"breed", "label", "index", "probability", "confident"}  # "confident" added beside
    assert top[0]["breed"] == top[0]["label"].split(".", 1)[1].replace("_", " ")
    assert predictor.classes[top[0]["index"]] == top[0]["label"]
    assert [p["probability"] for p in top] == sorted((p["probability"] for p in top), reverse=True)


def test_png_and_batches_of_instances(predictor) -> None:
    from PIL import Image

    png = io.BytesIO()
    Image.open(PHOTO).save(png, "PNG")
    assert len(predict(png.getvalue(), "image/png", predictor)) == 1
    b64 = base64.b64encode(PHOTO.read_bytes()).decode()
    body = json.dumps({"instances": [{"b64": b64}] * 3, "top_k": 2})
    answer = predict(body, "application/json", predictor)
    assert len(answer) == 3 and all(len(a) == 2 for a in answer)
    batch = np.stack([load_pixels_one(predictor)] * 2)
    assert len(predict(npy(batch), "application/x-npy", predictor)) == 2


def load_pixels_one(predictor) -> np.ndarray:
    return predictor.pixels(decode(PHOTO.read_bytes(), "image/jpeg"))[0]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"x", "text/plain", 415, "unsupported content type"),
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b'{"image": "%%%notbase64"}', "application/json", 400, "malformed base64"),
        (b'{"picture": "x"}', "application/json", 400, "JSON must be"),
        (b'{"instances": []}', "application/json", 400, "non-empty list"),
        (b'{"image": "aGVsbG8=", "top_k": 0}', "application/json", 400, "top_k must be a positive integer"),
        (npy(np.zeros((1, 3, 8, 8), np.float64)), "application/x-npy", 400, "float32"),
        (b"\x93NUMPY garbage", "application/x-npy", 400, "malformed .npy"),
    ],
)
def test_bad_requests_are_client_errors(body, content_type, status, message, predictor) -> None:
    with pytest.raises(BadInput, match=message) as err:
        predict(body, content_type, predictor)
    assert err.value.status == status


def test_npy_of_the_wrong_size_is_a_client_error(predictor) -> None:
    request = decode(npy(np.zeros((1, 3, 32, 32), np.float32)), "application/x-npy")
    with pytest.raises(BadInput, match="npy array must be N×3×64×64"):
        predictor.predict(request)


def test_unacceptable_accept_is_406() -> None:
    with pytest.raises(BadInput) as err:
        encode([[]], "image/png")
    assert err.value.status == 406


def test_preprocessing_is_the_data_modules_eval_transform(predictor, tiny_root: Path) -> None:
    dm = DogBreedDataModule(str(tiny_root), num_workers=0, image_size=64, url=None)
    dm.setup()
    path, _ = dm.samples["test"][0]
    expected = dm.dataset("test")[0][0]
    served = predictor.pixels(decode(path.read_bytes(), "image/jpeg"))[0]
    np.testing.assert_array_equal(served, expected)


class FakeContext:
    """What TorchServe hands the toolkit's Transformer: one context per model, whose request properties
    change with each request (the toolkit keeps the first one it sees and passes it to our handler)."""

    def __init__(self, model_dir: Path) -> None:
        self.system_properties = {"model_dir": str(model_dir)}
        processor = type("Processor", (), {"get_request_properties": lambda _: self.headers})()
        self.request_processor = [processor]

    def next(self, content_type: str, accept: str = "application/json", **headers: str) -> FakeContext:
        """The context as TorchServe sets it for the next request."""
        self.headers = {"Content-Type": content_type, "Accept": accept, **headers}
        self.status, self.content_types = None, {}
        return self

    def get_all_request_header(self, index: int) -> dict[str, str]:
        return self.headers

    def set_response_status(self, code: int, phrase: str) -> None:
        self.status = (code, phrase)

    def set_response_content_type(self, index: int, content_type: str) -> None:
        self.content_types[index] = content_type


def test_the_sagemaker_inference_toolkit_drives_our_handler(
    exported_model: Path, tmp_path: Path, monkeypatch
):
    from sagemaker_inference.transformer import Transformer

    tar = build_model_tar(exported_model, tmp_path / "model.tar.gz")
    model_dir = tmp_path / "opt_ml_model"
    resolve_model(tar, model_dir)
    monkeypatch.syspath_prepend(str(model_dir / "code"))  # what the container does with code/
    monkeypatch.delitem(__import__("sys").modules, "inference", raising=False)

    transformer = Transformer()
    context = FakeContext(model_dir)
    body = json.dumps({"image": base64.b64encode(PHOTO.read_bytes()).decode(), "top_k": 3}).encode()
    (response,) = transformer.transform([{"body": body}], context.next("application/json"))
    assert context.status is None and context.content_types == {0: "application/json"}
    assert [len(r) for r in json.loads(response)] == [3]
    fastest = "int8" if (model_dir / "model.int8.onnx").exists() else "onnx"  # as export left the model
    assert transformer._model.runtime == fastest
    # top_k as InvokeEndpoint forwards it, with the image's own bytes
    asked = context.next("image/jpeg", **{"X-Amzn-SageMaker-Custom-Attributes": "top_k=2"})
    (response,) = transformer.transform([{"body": PHOTO.read_bytes()}], asked)
    assert asked.status is None and [len(r) for r in json.loads(response)] == [2]

    # every error is our JSON with its status and nothing else: no traceback, no file path
    cases = [
        (b"not an image", "image/jpeg", 400, "not an image"),
        (b"", "image/jpeg", 400, "empty body"),
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b"a,b", "text/csv", 415, "unsupported content type"),
        (PHOTO.read_bytes(), "application/json", 400, "not UTF-8"),  # the toolkit decodes it first
    ]
    for data, kind, status, message in cases:
        bad = context.next(kind)
        (answer,) = transformer.transform([{"body": data}], bad)
        assert bad.status == (status, HTTPStatus(status).phrase), (kind, answer)
        assert message in json.loads(answer)["error"] and "Traceback" not in answer and ".py" not in answer
    monkeypatch.setattr(transformer._model, "probabilities", lambda pixels: 1 / 0)  # our fault, not theirs
    broken = context.next("image/jpeg")
    (answer,) = transformer.transform([{"body": PHOTO.read_bytes()}], broken)
    assert broken.status == (500, "Internal Server Error")
    assert json.loads(answer) == {"error": "internal error: ZeroDivisionError"}


def test_model_tar_layout(exported_model: Path, tmp_path: Path) -> None:
    tar = build_model_tar(exported_model, tmp_path / "model.tar.gz")
    with tarfile.open(tar) as archive:
        names = set(archive.getnames())
        requirements = archive.extractfile("code/requirements.txt").read().decode()
        serve_config = yaml.safe_load(archive.extractfile("config.yaml"))  # what the Ray Serve image runs
    exported = {f.name for f in exported_model.glob("*.onnx")}  # model.onnx, and int8 when the gate kept it
    assert {"model.pt", "classes.json", "config.json", ONNX, *exported, "code/inference.py"} <= names
    assert {"code/dogbreed/serving/adapters/toolkit/__init__.py", "code/dogbreed/data/classes.txt"} <= names
    (app,) = serve_config["applications"]
    assert app["import_path"] == "dogbreed.serving.adapters.ray_serve:build" and app["route_prefix"] == "/"
    assert app["logging_config"] == {"enable_access_log": False}
    assert "code/dogbreed/serving/adapters/ray_serve.py" in names
    assert not any("__pycache__" in n for n in names)
    assert [r for r in requirements.splitlines() if r and not r.startswith("#")] == ["onnxruntime>=1.17"]
    offline = build_model_tar(exported_model, tmp_path / "offline.tar.gz", offline=True)
    with tarfile.open(offline) as archive:
        assert archive.extractfile("code/requirements.txt").read() == b""


def test_the_torchserve_configuration_the_deploy_names_is_in_the_archive_with_its_plugin(
    exported_model: Path, tmp_path: Path
) -> None:
    """deploy=torchserve's TS_CONFIG_FILE is in model.tar.gz, its plugins_path holds the /ping jar, every
    $$VARIABLE$$ it reads is in the Environment the deploy sends (TorchServe refuses an unset one), and it
    keeps every key of the toolkit's own configuration."""
    spec = OmegaConf.load(CONF_DIR / "launch" / "deploy" / "torchserve.yaml")
    environment = container_environment(spec)
    inside = lambda path: PurePosixPath(path).relative_to(MODEL_DIR).as_posix()  # noqa: E731
    with tarfile.open(build_model_tar(exported_model, tmp_path / "model.tar.gz")) as archive:
        names = set(archive.getnames())
        text = archive.extractfile(inside(environment["TS_CONFIG_FILE"])).read().decode()
    properties = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert f"{inside(properties['plugins_path'])}/dogbreed-ping.jar" in names
    assert set(re.findall(r"\$\$(\w+)\$\$", " ".join(properties.values()))) <= set(environment)
    toolkit = {"vmargs", "enable_envvars_config", "decode_input_request", "load_models"}
    toolkit |= {"disable_token_authorization", "enable_model_api", "default_service_handler"}
    toolkit |= {
        "default_response_timeout",
        "default_workers_per_model",
        "inference_address",
        "management_address",
    }
    assert toolkit <= set(properties)


def test_the_ping_plugin_jar_is_built_from_its_source() -> None:
    """The committed jar records the SHA-256 of the Ping.java it was built from: an edit without a rebuild
    (`python -m launch.replay.stacks.ping_plugin`) fails here."""
    assert ping_plugin.recorded_hash() == ping_plugin.source_hash()
    with zipfile.ZipFile(ping_plugin.JAR) as jar:
        assert jar.read(ping_plugin.SERVICE).decode().split() == [ping_plugin.CLASS]
        assert f"{ping_plugin.CLASS.replace('.', '/')}.class" in jar.namelist()


def evil_tar(path: Path, member: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member, io.BytesIO(b"x" * member.size))
    return path


def test_tar_extraction_rejects_traversal_and_links(tmp_path: Path) -> None:
    traversal = tarfile.TarInfo("../evil.txt")
    traversal.size = 1
    with pytest.raises(DogBreedError, match="escapes the target directory"):
        resolve_model(evil_tar(tmp_path / "a.tar.gz", traversal), tmp_path / "out1")
    link = tarfile.TarInfo("model.pt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(DogBreedError, match="link or special file"):
        resolve_model(evil_tar(tmp_path / "b.tar.gz", link), tmp_path / "out2")
    assert not (tmp_path / "evil.txt").exists()


def test_missing_or_corrupt_model_files_are_clear_errors(trained_model: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "model"
    shutil.copytree(trained_model, broken)
    (broken / "classes.json").unlink()
    with pytest.raises(DogBreedError, match=r"classes\.json missing"):
        toolkit.model_fn(str(broken))
    shutil.copy(trained_model / "classes.json", broken)
    (broken / "model.pt").write_bytes(b"garbage")
    with pytest.raises(DogBreedError, match=r"model\.pt is corrupt or unreadable"):
        toolkit.model_fn(str(broken))


def test_checkpoints_are_served_too(trained_model: Path, tmp_path: Path) -> None:
    checkpoint = next((trained_model.parent / "checkpoints").glob("epoch*.ckpt"))
    model_dir = resolve_model(checkpoint, tmp_path / "from_ckpt")
    direct = toolkit.model_fn(str(trained_model))
    converted = toolkit.model_fn(str(model_dir))
    # a checkpoint holds the network; the temperature fitted after training lives in the artifact only
    assert converted.temperature == 1.0
    converted.temperature = direct.temperature
    pixels = load_pixels_one(direct)[None]
    np.testing.assert_allclose(direct.probabilities(pixels), converted.probabilities(pixels), atol=1e-6)


def test_runtime_choice_and_fallback(exported_model: Path, trained_model: Path, tmp_path: Path) -> None:
    import shutil

    from dogbreed.serving.export import quantize_int8

    forced = Path(shutil.copytree(exported_model, tmp_path / "model"))
    if not (forced / "model.int8.onnx").exists():  # export's gate removed it: build one to test the order
        quantize_int8(forced, load_pixels(forced, sorted(REAL_DOGS.glob("*.jpg"))))
    assert Service(forced).runtime == runtime_for(forced) == "int8"  # fastest first
    (forced / "model.int8.onnx").unlink()
    assert Service(forced).runtime == runtime_for(forced) == "onnx"
    assert Service(trained_model).runtime == "eager"  # nothing exported: eager PyTorch
    with pytest.raises(ValueError, match=r"model\.onnx is missing"):
        Service(trained_model, "onnx")


def test_exported_models_agree_with_eager(exported_model: Path, tmp_path_factory) -> None:
    from dogbreed.data.synthetic import generate_dataset
    from dogbreed.serving.export import image_files

    fresh = generate_dataset(tmp_path_factory.mktemp("agree") / "set", classes=6, train_per_class=30, seed=99)
    generated = load_pixels(exported_model, image_files(fresh, 200))
    real = load_pixels(exported_model, sorted(REAL_DOGS.glob("*.jpg")))
    assert top1_agreement(exported_model, "onnx", generated) >= 0.99
    assert top1_agreement(exported_model, "onnx", real) == 1.0
    if (exported_model / "model.int8.onnx").exists():  # kept by the gate: it must agree as the gate says
        assert top1_agreement(exported_model, "int8", generated) >= 0.99


def test_export_tries_every_calibration_and_gates_on_enough_inputs(exported_model: Path) -> None:
    import json

    report = json.loads((exported_model.parent / "export_report.json").read_text())
    assert set(report["int8_methods"]) == {"MinMax", "Entropy", "Percentile"}
    assert report["int8_method"] == max(report["int8_methods"], key=report["int8_methods"].get)
    assert report["check_inputs"] == 72  # 18 test images in four views: the most a small set can give
    assert report["allowed_disagreements"] == 0
    assert report["int8_kept"] == (report["int8"] >= 0.99) == (exported_model / "model.int8.onnx").exists()
    if report["int8_methods"][report["int8_method"]] < 0.99:  # layers were left in fp32, worst first
        assert 1 <= len(report["int8_fp32_layers"]) <= 3
