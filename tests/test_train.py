"""The Hydra entry point: config composition, end-to-end runs, the offline error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from dogbreed.hparams import HYPERPARAMETERS
from dogbreed.serving.artifact import read_artifact
from dogbreed.training.config import CONF_DIR
from dogbreed.training.metric_lines import metric_definitions, parse_metrics
from tests.conftest import FAST_OVERRIDES, HANG_GUARD_S, TINY, compose_train, run_train

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(experiment: str, tmp_path: Path) -> None:
    cfg = compose_train([f"+experiment={experiment}", f"paths.run_dir={tmp_path}"])
    dm = instantiate(cfg.data, _convert_="all")
    assert dm.hparams.batch_size == cfg.data.batch_size
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    model = instantiate(cfg.model, num_classes=5, pretrained=False, _convert_="all")
    assert model.num_classes == 5


def test_local_experiment_is_the_seed_recipe() -> None:
    cfg = compose_train(["+experiment=local", "paths.run_dir=x"])
    assert cfg.data.root == "data/dogImages" and cfg.data.url.endswith("dogImages.zip")
    assert cfg.model.pretrained and cfg.model.freeze_backbone
    assert cfg.trainer.max_epochs == 10 and cfg.data.expected_classes == 133


def test_demo_end_to_end(tiny_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_train(
        [
            "+experiment=demo",
            f"data.root={tiny_root}",
            f"hydra.run.dir={run_dir}",
            *FAST_OVERRIDES,
            "trainer.max_epochs=2",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.findall(r"^epoch=(\d+) val_loss=\S+ val_acc=\S+$", out, re.M) == ["0", "1"]
    assert re.search(r"^test_loss=\S+ test_acc=\S+$", out, re.M)
    assert f"model artifact: {run_dir / 'model'}" in out

    for name in ("config.yaml", "metrics.csv", "train.log"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and len(checkpoints) == 2

    state = torch.load(run_dir / "model" / "model.pt", weights_only=True)
    assert state["fc.weight"].shape == (TINY["classes"], 512)
    net, classes, config = read_artifact(run_dir / "model")
    assert net.fc.out_features == TINY["classes"] and not net.training
    assert classes == sorted(p.name for p in (tiny_root / "train").iterdir())
    assert config["preprocessing"] == {
        "image_size": 64,
        "resize_size": 73,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    parsed = parse_metrics(out)
    assert config["metrics"]["test_acc"] == pytest.approx(parsed["test_acc"][0], abs=1e-6)
    assert config["metrics"]["best_val_acc"] == pytest.approx(max(parsed["val_acc"]), abs=1e-6)
    assert not list(run_dir.glob(".model.*")), "no temporary artifact left"


def test_metric_definitions_match_a_real_training_log(tmp_path: Path) -> None:
    log = "epoch=3 val_loss=0.512300 val_acc=0.875000\ntest_loss=nan test_acc=1.000000\n"
    found = {d["Name"]: re.findall(d["Regex"], log) for d in metric_definitions()}
    assert found == {
        "val_loss": ["0.512300"],
        "val_acc": ["0.875000"],
        "test_loss": ["nan"],
        "test_acc": ["1.000000"],
    }


def test_sagemaker_style_invocation(tiny_root: Path, tmp_path: Path) -> None:
    """Hyperparameters as a tuning job sends them and the SM_* variables of a training container."""
    env = {
        "SM_CHANNEL_TRAINING": str(tiny_root),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output"),
        "SM_NUM_GPUS": "0",
    }
    args = [
        "--experiment",
        '"demo"',
        "--lr",
        '"0.02"',
        "--batch-size",
        '"8"',
        "--epochs",
        "1",
        "--image_size",
        "64",
        "--num-workers",
        "0",
        "--_tuning_objective_metric",
        "val_acc",
        f"paths.checkpoints={tmp_path / 'checkpoints'}",  # not this machine's /opt/ml/checkpoints
    ]
    result = run_train(args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["hyperparameters"]["lr"] == 0.02
    assert (tmp_path / "output" / "config.yaml").read_text().count("batch_size: 8") == 1
    assert parse_metrics(result.stdout)["val_acc"]


def test_unknown_hyperparameter_is_an_error_listing_known_names() -> None:
    result = run_train(["--learning-rate", "0.1"], timeout=HANG_GUARD_S)
    assert result.returncode == 2
    known = ", ".join(sorted(HYPERPARAMETERS))
    assert f"unknown hyperparameter(s) ['learning_rate']; known: {known}" in result.stderr
    assert "Traceback" not in result.stderr


def test_offline_local_experiment_fails_fast_with_ways_forward(tmp_path: Path) -> None:
    result = run_train(
        [
            "+experiment=local",
            f"data.root={tmp_path / 'dogImages'}",
            f"hydra.run.dir={tmp_path / 'run'}",
            "data.url=http://127.0.0.1:9/dogImages.zip",
        ],
        timeout=HANG_GUARD_S,  # "fast" is what the output shows: one attempt, no retries
    )
    assert result.returncode == 2
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    assert "download interrupted" not in text  # a refused connection is final at once, never retried
    assert "the dataset URL http://127.0.0.1:9/dogImages.zip is unreachable" in text
    assert "ImageNet weights for resnet18 are not cached and could not be downloaded" in text
    for way in ("data.root=", "model.weights_path=", "+experiment=demo"):
        assert way in text
