"""`python -m launch.replay.stacks [--prune]`: build (or find) every stack's cached environment; prints
their paths, and the environments an older profile left (each up to 7.5 GB), which `--prune` deletes.

The builds are mostly downloads and unpacking, so they run side by side.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dogbreed.errors import exit_on_user_error
from launch.replay.environments import check_space, environment, missing, remove, stale
from launch.replay.stacks import ray_serve, torchserve, training

STACKS = (ray_serve, training, torchserve)


def size_gb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 1e9


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m launch.replay.stacks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--prune", action="store_true", help="delete cached environments no stack uses now")
    args = parser.parse_args()
    with exit_on_user_error(), ThreadPoolExecutor(len(STACKS)) as pool:
        check_space(missing([stack.ENVIRONMENT for stack in STACKS]))  # side by side: room for all first
        current = list(pool.map(lambda stack: environment(stack.ENVIRONMENT), STACKS))
        for path in current:
            print(path)
        old = stale(current)
        for path in old:
            if not args.prune:
                print(f"unused: {path} ({size_gb(path):.1f} GB)")
            elif remove(path):
                print(f"deleted the unused {path}")
            else:
                print(f"kept the unused {path}: it is being built")
        if old and not args.prune:
            print("no stack uses these any more: `python -m launch.replay.stacks --prune` deletes them")
