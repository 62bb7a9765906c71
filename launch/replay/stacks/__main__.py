"""`python -m launch.replay.stacks`: build (or find) every stack's cached environment; prints their paths."""

from __future__ import annotations

from dogbreed.errors import exit_on_user_error
from launch.replay.environments import environment
from launch.replay.stacks import ray_serve, torchserve, training

STACKS = (ray_serve, training, torchserve)  # torchserve's environment is built on top of training's

if __name__ == "__main__":
    with exit_on_user_error():
        for stack in STACKS:
            print(environment(stack.ENVIRONMENT))
