"""The default training image (pytorch-amzn2023 2.14), its pins, and signals to a job replayed in its
environment (the job itself, on Python 3.12 and torch 2.14.0: tests/test_replay.py's flow).

The replays need that image's environment (torch 2.14.0 from the package index: see the README); `make
stacks` builds it once, and the first test to need it builds it otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dogbreed.errors import DogBreedError
from launch.images import image_uri, profile_of
from tests.conftest import REPO, ctrl_c_reaches
from tests.test_intent import dry_run, launch_cfg, training
from tests.test_launch import BUCKET, CLEAN, ROLE, moto  # noqa: F401
from tests.test_replay import SMALL


def test_the_default_training_image_is_amzn2023_cpu_or_gpu_by_instance() -> None:
    cfg = launch_cfg(["train=default"])
    assert cfg.training_image == "pytorch-amzn2023"
    registry = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch"
    for instance, tag in (("ml.m5.xlarge", "2.14-cpu"), ("ml.g5.xlarge", "2.14-cu133")):
        uri = image_uri(cfg.training_image, "us-east-1", instance)
        assert uri == f"{registry}:{tag}-amzn2023-sagemaker"
        assert profile_of(uri, instance, "training") == "pytorch-amzn2023"  # what replay reads back
    classic = image_uri("pytorch-training", "us-east-1", "ml.m5.xlarge")  # still selectable
    assert classic.endswith("/pytorch-training:2.5-cpu-py311")
    assert profile_of(classic, "ml.m5.xlarge", "training") == "pytorch-training"


def test_requirements_that_conflict_with_the_image_are_named_before_anything_is_sent(
    tiny_root: Path, tmp_path: Path, monkeypatch
) -> None:
    from launch.commands import train

    real = train.container_requirements
    monkeypatch.setattr(train, "container_requirements", lambda *a: real(*a) + "numpy<2\n")
    lines = real(None, train.JOB).count("\n") + 1  # the added line's number
    for command in ("train=default", "hpo=default"):
        cfg = launch_cfg([command, "experiment=demo", training(f"data.root={tiny_root}")])
        with pytest.raises(DogBreedError) as err:
            dry_run(cfg, tmp_path / command, monkeypatch)
        assert str(err.value).startswith(
            f"the training job's requirements.txt (pyproject.toml's dependencies less numpy, pillow, "
            f"torch, torchvision) line {lines} 'numpy<2' conflicts with the image pytorch-amzn2023, "
            "which has numpy 2.5.3"
        )
        assert not (tmp_path / command / "requests").exists()  # nothing recorded, nothing uploaded


def job_processes(tree: Path) -> list[psutil.Process]:
    """The live processes of a replayed job: everything started in it has its tree in TREE."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get("TREE") == str(tree):
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "when"),
    [
        (signal.SIGTERM, "[job] train.py: Python 3.12"),  # training, in the image's environment
        (signal.SIGINT, "[job] Installing requirements"),  # pip, installing into the job's overlay
    ],
    ids=["SIGTERM-training", "SIGINT-pip"],
)
def test_a_signal_to_a_replayed_job_leaves_no_process(
    moto: dict[str, str],  # noqa: F811
    tiny_root: Path,
    tmp_path: Path,
    sig: signal.Signals,
    when: str,
) -> None:
    """SIGTERM or Ctrl-C while the job runs in the image's environment: nothing of it is left."""
    run = tmp_path / "run"
    command = [
        sys.executable,
        "launch/sagemaker.py",
        f"hydra.run.dir={run}",
        f"role_arn={ROLE}",
        f"bucket={BUCKET}",
        "region=us-east-1",
        "train=default",
        "experiment=demo",
        "replay=true",
        f"data.root={tiny_root}",
        "trainer.max_epochs=50",  # still training when the signal comes
        *SMALL[1:],
    ]
    launcher = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**CLEAN, **moto},
        preexec_fn=ctrl_c_reaches,
    )
    try:
        seen = []
        for line in launcher.stdout:
            seen.append(line)
            if when in line:
                break
        else:
            pytest.fail("the job never started: " + "".join(seen[-40:]))
        tree = next(p for p in (run / "replay").iterdir() if p.is_dir()) / "opt_ml"
        assert job_processes(tree), "the job's processes carry TREE"
        launcher.send_signal(sig)
        launcher.communicate(timeout=120)  # a hang guard
        deadline = time.monotonic() + 60  # a hang guard, generous for a loaded machine
        while (left := job_processes(tree)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, [p.cmdline() for p in left]
    finally:
        if launcher.poll() is None:
            os.kill(launcher.pid, signal.SIGKILL)
            launcher.wait()
