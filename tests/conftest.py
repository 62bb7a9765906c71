"""Shared fixtures: tiny generated datasets and the real Hydra config, shrunk for speed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

from dogbreed.data.synthetic import generate_dataset
from dogbreed.training.config import compose_training

REPO = Path(__file__).resolve().parent.parent
REAL_DOGS = Path(__file__).resolve().parent / "data" / "real-dogs"
# How long a command under test may take before it counts as hung: a hang guard, never a speed check. A
# loaded 2-core machine (CI with other work beside it) has taken over 300 s for a 3-epoch training run.
HANG_GUARD_S = 1800

# Small enough for seconds-long runs on 2 cores, large enough to learn.
TINY = {"classes": 6, "train_per_class": 8, "valid_per_class": 3, "test_per_class": 3, "seed": 1}
# trials.csv, from the local search and from a SageMaker tuning job alike (dogbreed.hparams.write_results)
TRIALS_COLUMNS = ["trial", "state", "val_acc", "lr", "eps", "weight_decay", "batch_size", "epochs", "seconds"]
FAST_OVERRIDES = [
    "data.image_size=64",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.fixture(autouse=True)
def _isolated_torch_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or fill the user's torch hub cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention generated dataset in dogImages layout (6 classes)."""
    return generate_dataset(tmp_path_factory.mktemp("data") / "tiny", **TINY)


def compose_train(overrides: list[str] | None = None) -> DictConfig:
    """The real `conf/train.yaml` with overrides, as Hydra composes it for the entry point."""
    return compose_training(overrides or [])


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM to the test run stops it as Ctrl-C does: fixtures tear down, and `subprocess.run` kills the
    command under test. Python's default for SIGTERM ends pytest at once and leaves that command running;
    `dogbreed.processes.raise_on_signals`'s SystemExit would fail one test and let the run go on."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def ctrl_c_reaches() -> None:
    """`preexec_fn` for a process a test will send SIGINT: SIGINT back to its default, as a shell gives a
    foreground command. A runner started in the background (`make test &`) hands SIGINT on ignored, and a
    Python started so never raises KeyboardInterrupt: the test would judge how it was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_repo(
    args: list[str], env: dict[str, str] | None = None, timeout: float = HANG_GUARD_S
) -> subprocess.CompletedProcess:
    """`python ARGS` from the repository root in a subprocess, as a user runs our commands."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_train(
    args: list[str], env: dict[str, str] | None = None, timeout: float = HANG_GUARD_S
) -> subprocess.CompletedProcess:
    """`python -m dogbreed.train ARGS`."""
    return run_repo(["-m", "dogbreed.train", *args], env, timeout)


def run_launch(args: list[str], timeout: float = HANG_GUARD_S) -> subprocess.CompletedProcess:
    """`python launch/sagemaker.py ARGS`."""
    return run_repo(["launch/sagemaker.py", *args], timeout=timeout)


@pytest.fixture(scope="session")
def trained_model(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `model/` artifact trained briefly on the tiny set (64 px): what the demo produces, smaller."""
    from dogbreed.training.run import run

    run_dir = tmp_path_factory.mktemp("trained")
    cfg = compose_train(
        [
            "+experiment=demo",
            f"data.root={tiny_root}",
            f"paths.run_dir={run_dir}",
            *FAST_OVERRIDES,
            "trainer.max_epochs=2",
        ]
    )
    run(cfg)
    return run_dir / "model"


@pytest.fixture(scope="session")
def exported_model(trained_model: Path, tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained artifact with `model.onnx` beside it, and `model.int8.onnx` when export's gate kept it."""
    import json
    import shutil

    from dogbreed.serving.export import export

    model_dir = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(trained_model, model_dir)
    report = export(model_dir, tiny_root / "valid", tiny_root / "test")
    (model_dir.parent / "export_report.json").write_text(json.dumps(report))
    return model_dir
