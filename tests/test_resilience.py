"""Scale-out and fault tolerance: 2-process DDP, resume after SIGKILL, SIGTERM, atomic checkpoints."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dogbreed.container import env_overrides
from dogbreed.training.checkpoints import AtomicCheckpointIO, find_resume_checkpoint
from tests.conftest import FAST_OVERRIDES, HANG_GUARD_S, REPO, compose_train, run_train

pytestmark = pytest.mark.slow


def train_cmd(tiny_root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dogbreed.train",
        "+experiment=demo",
        f"data.root={tiny_root}",
        f"hydra.run.dir={run_dir}",
        *FAST_OVERRIDES,
        *extra,
    ]


def batches_per_rank(text: str) -> dict[int, int]:
    return {int(r): int(n) for r, n in re.findall(r"rank (\d+) of \d+ saw (\d+) training batches", text)}


def test_two_process_ddp_run(tiny_root: Path, tmp_path: Path) -> None:
    common = [
        "+experiment=demo",
        f"data.root={tiny_root}",
        *FAST_OVERRIDES,
        "data.batch_size=8",
        "trainer.max_epochs=2",
    ]
    single = run_train([*common, f"hydra.run.dir={tmp_path / 'one'}"])
    ddp = run_train(
        [
            *common,
            f"hydra.run.dir={tmp_path / 'two'}",
            "trainer=ddp",
            "trainer.devices=2",
            "trainer.accelerator=cpu",
        ]
    )
    assert single.returncode == 0, single.stderr[-3000:]
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    logs = ddp.stdout + ddp.stderr + "".join(p.read_text() for p in (tmp_path / "two").glob("*.log"))
    one = batches_per_rank(single.stdout + single.stderr + (tmp_path / "one" / "train.log").read_text())
    two = batches_per_rank(logs)
    assert one == {0: 12} and two == {0: 6, 1: 6}, (one, two)  # 48 images, batch 8, 2 epochs
    assert len(re.findall(r"^epoch=\d+ val_loss", ddp.stdout, re.M)) == 2, "metric lines from rank 0 only"
    assert len(list((tmp_path / "two").rglob("model.pt"))) == 1
    acc = [
        json.loads((tmp_path / d / "model" / "config.json").read_text())["metrics"]["test_acc"]
        for d in ("one", "two")
    ]
    assert abs(acc[0] - acc[1]) <= 0.35 and min(acc) > 1 / 6, acc


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, (
            f"training ended before {path} appeared: {process.stderr.read()[-2000:]}"
        )
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


SLOW = ["data.batch_size=2", "data.image_size=96", "trainer.max_epochs=4", "checkpoint.every_n_steps=3"]


def training_with_a_checkpoint(tiny_root: Path, run_dir: Path) -> subprocess.Popen:
    """A slowish training run in the background, once its first last.ckpt exists."""
    process = subprocess.Popen(
        train_cmd(tiny_root, run_dir, *SLOW),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(run_dir / "checkpoints" / "last.ckpt", process)
    return process


def test_resume_after_sigkill_and_a_truncated_checkpoint(tiny_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = training_with_a_checkpoint(tiny_root, run_dir)
    first.kill()  # SIGKILL: no chance to clean up (at once: a wait would race a fast machine to the end)
    first.wait()
    assert not (run_dir / "model").exists(), "the run finished before it could be killed"
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    truncated = run_dir / "checkpoints" / "zz-newer.ckpt"
    truncated.write_bytes((run_dir / "checkpoints" / "last.ckpt").read_bytes()[:5000])

    second = subprocess.run(
        train_cmd(tiny_root, run_dir, *SLOW), cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr + (run_dir / "train.log").read_text()
    assert f"skipping checkpoint {truncated}" in log
    resumed = re.search(r"resuming from (\S+) \(epoch (\d+), step (\d+)\)", log)
    assert resumed and resumed.group(1).endswith("last.ckpt"), log[-2000:]
    assert int(resumed.group(3)) >= saved["global_step"] > 0
    epochs = [int(e) for e in re.findall(r"^epoch=(\d+) ", second.stdout, re.M)]
    assert epochs and epochs[-1] == 3, "finished the configured 4 epochs"
    assert json.loads((run_dir / "model" / "config.json").read_text())["metrics"]["epochs"] == 4


def test_a_resumed_run_keeps_the_metrics_rows_of_the_run_it_resumes(tiny_root: Path, tmp_path: Path) -> None:
    from dogbreed.training.run import run

    base = ["+experiment=demo", f"data.root={tiny_root}", f"paths.run_dir={tmp_path}", *FAST_OVERRIDES]
    assert run(compose_train(base)).status == "complete"  # one epoch, tested
    resumed = run(compose_train([*base, "trainer.max_epochs=2"]))  # from last.ckpt, for the second epoch
    assert resumed.status == "complete" and resumed.metrics["epochs"] == 2
    with (tmp_path / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["epoch"]) for r in rows if r["val/acc"]] == [0, 1]
    assert [int(r["epoch"]) for r in rows if r["train/loss"]] == [0, 1]
    assert len([r for r in rows if r["test/acc"]]) == 1, "the first run's test row is replaced"


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tiny_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = training_with_a_checkpoint(tiny_root, run_dir)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=HANG_GUARD_S)  # a hang guard, not a speed check
    assert process.returncode == 0, err[-2000:]
    saved = re.search(r"SIGTERM: saved \S+ at step (\d+)", err + (run_dir / "train.log").read_text())
    # stopped at a batch boundary soon after the signal, not at the end of the 4 epochs (96 steps)
    assert saved and 3 <= int(saved[1]) < 96, err[-2000:]
    assert find_resume_checkpoint(run_dir / "checkpoints") is not None
    assert not (run_dir / "model").exists()


def test_atomic_checkpoint_never_leaves_a_half_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, target)
    before = target.read_bytes()

    def broken_save(obj, f):
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_torchrun_environment_selects_ddp() -> None:
    env = {
        "SM_MODEL_DIR": "/opt/ml/model",
        "WORLD_SIZE": "4",
        "LOCAL_WORLD_SIZE": "2",
        "SM_HOSTS": json.dumps(["algo-1", "algo-2"]),
    }
    assert env_overrides(env) == [
        "paths.model_dir=/opt/ml/model",
        "paths.checkpoints=/opt/ml/checkpoints",
        "trainer=ddp",
        "trainer.num_nodes=2",
        "trainer.devices=2",
    ]
    assert "trainer=ddp" not in env_overrides({**os.environ, "WORLD_SIZE": "1"})


def test_a_finished_run_run_again_says_so_and_starting_over_keeps_the_old_files(
    tiny_root: Path, tmp_path: Path
) -> None:
    args = ["+experiment=demo", f"data.root={tiny_root}", f"hydra.run.dir={tmp_path}", *FAST_OVERRIDES]
    first = run_train([*args, "debug=on"])
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoints = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()}

    again = run_train(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is already complete" in again.stdout and "resume=false" in again.stdout
    assert "test_loss=" not in again.stdout  # nothing trained, nothing tested again
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()} == checkpoints

    over = run_train([*args, "resume=false"])
    assert over.returncode == 0, over.stderr[-3000:]
    assert "test_loss=" in over.stdout
    (aside,) = tmp_path.glob("previous-*")
    assert (aside / "debug" / "rules.json").is_file() and (aside / "model" / "model.pt").is_file()
    assert set(p.name for p in (aside / "checkpoints").iterdir()) == set(checkpoints)
    assert not (tmp_path / "debug").exists(), "the new run (debug=off) has no debug files of the old one"
    assert "best checkpoint" in (aside / "train.log").read_text()
    assert (tmp_path / "train.log").read_text().count("best checkpoint") == 1, "one run per log"
    assert len([line for line in (tmp_path / "metrics.csv").read_text().splitlines() if line]) > 1
