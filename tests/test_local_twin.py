"""instance=local: the SageMaker container contract on this machine, checked with the real toolkit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import psutil
import pytest

from dogbreed.container import FILE_CHANNEL, lay_out_opt_ml
from launch.commands.train import stage_source
from tests.conftest import HANG_GUARD_S, REPO, ctrl_c_reaches, run_launch

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
        timeout=HANG_GUARD_S,
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
        "code/dogbreed/serving/adapters/toolkit/__init__.py",
        "code/dogbreed/serving/adapters/toolkit/ts.properties",
        "code/dogbreed/serving/adapters/toolkit/plugins/dogbreed-ping.jar",
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
    strings = {k: str(v) for k, v in hyperparameters.items()}
    env = {**os.environ, **lay_out_opt_ml(tree, strings, {"training": FILE_CHANNEL}, host="localhost")}
    (tree / "input" / "data" / "training").symlink_to(tiny_root, target_is_directory=True)
    for name in [k for k in env if k.startswith("SM_")]:
        env.pop(name)  # the toolkit derives these itself from the tree
    result = subprocess.run(
        [sys.executable, "-c", "from sagemaker_training.cli.train import main; main()"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "epoch=0 val_loss=" in output and "test_acc=" in output
    assert (tree / "model" / "model.pt").is_file() and (tree / "model" / "code" / "inference.py").is_file()
    assert (tree / "output" / "data" / "config.yaml").is_file()


@pytest.fixture(scope="module")
def local_tar(exported_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dogbreed.serving.package import build_model_tar

    return build_model_tar(exported_model, tmp_path_factory.mktemp("tar") / "model.tar.gz")


def start_local_deploy(tar: Path, port: int, run_dir: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "launch/sagemaker.py",
        "instance=local",
        "deploy=default",
        f"deploy.training_job={tar}",
        f"local_port={port}",
        f"hydra.run.dir={run_dir}",
    ]
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=ctrl_c_reaches
    )


def port_is_free(port: int) -> bool:
    """A new server could listen on `port` (as servers do, with SO_REUSEADDR: a closed connection's
    TIME_WAIT does not count as held)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_local_endpoint_ends_with_the_launcher(local_tar: Path, tmp_path: Path, sig: signal.Signals) -> None:
    from launch.replay.stacks import free_port
    from tests.conftest import REAL_DOGS
    from tests.test_processes import gone
    from tests.test_serve import wait_ready

    port = free_port()
    launcher = start_local_deploy(local_tar, port, tmp_path / "deploy")
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        children = psutil.Process(launcher.pid).children(recursive=True)
        assert children, "the endpoint should run as the launcher's child"
        if sig == signal.SIGTERM:  # once: the endpoint answers through invoke= before it is stopped
            result = run_launch(
                [
                    "instance=local",
                    f"invoke=http://127.0.0.1:{port}",
                    f"image={REAL_DOGS / 'Brittany_02625.jpg'}",
                    f"hydra.run.dir={tmp_path / 'invoke'}",
                ],
                timeout=HANG_GUARD_S,
            )
            assert result.returncode == 0, result.stderr[-3000:]
            assert result.stdout.count("%") == 5 and "1. " in result.stdout
        launcher.send_signal(sig)
        # hang guards, not speed checks: a loaded machine may take a while, a leak never ends
        deadline = time.monotonic() + 60
        while not port_is_free(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert port_is_free(port), f"port {port} still held 60 s after {sig.name}"
        assert all(gone(c.pid) for c in children), [c.pid for c in children]
    finally:
        launcher.kill()
        launcher.wait()
