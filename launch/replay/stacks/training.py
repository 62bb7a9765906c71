"""SageMaker's PyTorch training image (`pytorch-amzn2023`, `training_image=` in conf/launch/launch.yaml),
replayed in an environment with the image's Python and packages (`conf/launch/images/pytorch-amzn2023.yaml`).

A replayed ModelTrainer job (`train=`) runs its `sm_drivers` scripts with a fresh overlay of that
environment's python first on PATH, so `sm_train.sh` finds it as `python3`, and the job's requirements.txt
is pip-installed into the overlay as the drivers install it (`python3 -m pip install -r`), held to the
image's pins; our package arrives in the code channel, as in the image. A tuner's trials take the image's
own start instead: the sagemaker-training toolkit of the environment (with the image's
SAGEMAKER_TRAINING_MODULE), which installs the submitted requirements.txt the same way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from launch.replay.environments import StackEnvironment, environment, overlay

ENVIRONMENT = StackEnvironment(image="pytorch-amzn2023")


def runs_here(image: str | None, uri: str) -> str | None:
    """Why a job of `image` (its profile; None: no profile has the URI) is replayed on this repository's
    environment instead of the image's; None when it runs in the image's (ModelTrainer's sm_drivers and a
    tuner's trials through the image's own toolkit alike)."""
    if image == ENVIRONMENT.image:
        return None
    return f"no replay environment for the training image {image or uri}"


def job_python(folder: Path) -> tuple[Path, list[Path]]:
    """A fresh overlay of the image's environment in `folder`: its python, and what goes first on PATH
    (the overlay's bin, then the environment's, where `pip3` is: `sm_train.sh` looks for one)."""
    base = environment(ENVIRONMENT)
    shutil.rmtree(folder, ignore_errors=True)
    python = overlay(base, folder)
    return python, [python.parent, base / "bin"]
