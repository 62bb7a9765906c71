"""`python -m launch.replay.stacks`: build (or find) every stack's cached environment; prints their paths.

The builds are mostly downloads and unpacking, so they run side by side (torchserve's builds the training
image's first, as its base; the cache's lock keeps the two from building it twice).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from dogbreed.errors import exit_on_user_error
from launch.replay.environments import environment
from launch.replay.stacks import ray_serve, torchserve, training

STACKS = (ray_serve, training, torchserve)  # torchserve's environment is built on top of training's

if __name__ == "__main__":
    with exit_on_user_error(), ThreadPoolExecutor(len(STACKS)) as pool:
        for path in pool.map(lambda stack: environment(stack.ENVIRONMENT), STACKS):
            print(path)
