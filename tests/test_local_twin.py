"""instance=local: the SageMaker container contract on this machine, checked with the real toolkit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from launch.local import opt_ml_tree
from launch.training import stage_source
from tests.conftest import REPO, run_launch

pytestmark = pytest.mark.slow
SMALL = ["trainer.max_epochs=1", "data.image_size=64", "data.num_workers=0"]


def test_local_training_job_produces_model_tar(tiny_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_launch(
        [
            "instance=local",
            "train=default",
            "experiment=demo",
            f"hydra.run.dir={run_dir}",
            "--",
            f"data.root={tiny_root}",
            *SMALL,
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"model: {run_dir / 'model.tar.gz'}" in result.stdout
    config = run_dir / "opt_ml" / "input" / "config"
    assert json.loads((config / "hyperparameters.json").read_text()) == {
        "experiment": "demo",
        "epochs": "1",
        "image_size": "64",
        "num_workers": "0",
    }
    assert json.loads((config / "resourceconfig.json").read_text())["hosts"] == ["localhost"]
    with tarfile.open(run_dir / "model.tar.gz") as tar:
        names = set(tar.getnames())
    assert {
        "model.pt",
        "classes.json",
        "config.json",
        "code/inference.py",
        "code/dogbreed/inference.py",
    } <= names
    assert (run_dir / "opt_ml" / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "opt_ml" / "output" / "data" / "metrics.csv").is_file()


def test_the_sagemaker_training_toolkit_runs_our_entry_point(tiny_root: Path, tmp_path: Path) -> None:
    source = stage_source(tmp_path)
    (source / "requirements.txt").unlink()  # everything is installed here; no pip run inside the test
    hyperparameters = {
        "experiment": "demo",
        "epochs": 1,
        "image_size": 64,
        "num_workers": 0,
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": str(source),
    }
    tree = tmp_path / "opt_ml"
    env = {**os.environ, **opt_ml_tree(tree, hyperparameters, tiny_root)}
    for name in [k for k in env if k.startswith("SM_")]:
        env.pop(name)  # the toolkit derives these itself from the tree
    result = subprocess.run(
        [sys.executable, "-c", "from sagemaker_training.cli.train import main; main()"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "epoch=0 val_loss=" in output and "test_acc=" in output
    assert (tree / "model" / "model.pt").is_file() and (tree / "model" / "code" / "inference.py").is_file()
    assert (tree / "output" / "data" / "config.yaml").is_file()


def test_local_deploy_and_invoke(exported_model: Path, tmp_path: Path) -> None:
    from dogbreed.package import build_model_tar
    from tests.conftest import REAL_DOGS
    from tests.test_serve import free_port

    tar = build_model_tar(exported_model, tmp_path / "model.tar.gz")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "launch/sagemaker.py",
            "instance=local",
            "deploy=default",
            f"deploy.training_job={tar}",
            f"local_port={port}",
            f"hydra.run.dir={tmp_path / 'deploy'}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        result = run_launch(
            [
                "instance=local",
                f"invoke=http://127.0.0.1:{port}",
                f"image={REAL_DOGS / 'Brittany_02625.jpg'}",
                f"hydra.run.dir={tmp_path / 'invoke'}",
            ],
            timeout=120,
        )
    finally:
        server.terminate()
        server.wait(10)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("%") == 5 and "1. " in result.stdout
