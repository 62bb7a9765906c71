"""`python -m launch.replay.stacks`: build (or find) every stack's cached environment; prints their paths."""

from __future__ import annotations

from dogbreed.errors import exit_on_user_error
from launch.replay.environments import environment
from launch.replay.stacks import ray_serve, torchserve

STACKS = (ray_serve, torchserve)  # torchserve's is built on the training image's: that one too

if __name__ == "__main__":
    with exit_on_user_error():
        for stack in STACKS:
            print(environment(stack.ENVIRONMENT))
