"""SageMaker's PyTorch training image (`pytorch-amzn2023`, `training_image=` in conf/launch/launch.yaml),
replayed in an environment with the image's Python and packages (`conf/launch/images/pytorch-amzn2023.yaml`).

The PyTorch inference image's replay (TorchServe) is built on top of this environment, so that one torch
build from the package index (about 5 GB) serves both.
"""

from __future__ import annotations

from launch.replay.environments import StackEnvironment

ENVIRONMENT = StackEnvironment(image="pytorch-amzn2023")
