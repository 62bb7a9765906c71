"""`cleanup=all` or `cleanup=<name>`: take down what this project runs, listed first and asked about.

What it finds by the launcher's tags (`launch.inventory`): endpoints go with their scaling policies,
configs and models (`launch.teardown`); models and configs no endpoint serves are deleted; running jobs
are asked to stop. `yes=true` skips the question; without a terminal to ask on, nothing is deleted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from omegaconf import DictConfig

from dogbreed.errors import DogBreedError
from launch import inventory
from launch.command import Command
from launch.inventory import Found
from launch.teardown import take_down


def targets(found: list[Found], which: str) -> list[Found]:
    """What `cleanup=<which>` takes down: endpoints, then unserved configs and models, then running jobs."""
    configs, models = inventory.in_use(found)
    served = {("endpoint-config", n) for n in configs} | {("model", n) for n in models}
    chosen = [
        f
        for f in found
        if (f.kind, f.name) not in served and (f.kind not in inventory.JOBS or f.status in inventory.RUNNING)
    ]
    if which != "all":
        chosen = [f for f in chosen if f.name == which]
        if not chosen:
            raise DogBreedError(
                f"no endpoint, unserved model or config, or running job of this project is named {which!r}; "
                "`python launch/sagemaker.py status` lists them"
            )
    order = ["endpoint", "endpoint-config", "model", *inventory.JOBS]
    return sorted(chosen, key=lambda f: order.index(f.kind))


def agreed(cfg: DictConfig, count: int) -> bool:
    """`yes=true`, or a yes typed at the terminal; no terminal is a refusal that says how to agree."""
    if cfg.yes:
        return True
    if not sys.stdin.isatty():
        raise DogBreedError(
            f"nothing deleted: no terminal to ask on; pass yes=true to take these {count} down"
        )
    return input(f"take these {count} down? [y/N] ").strip().lower() in ("y", "yes")


def send(cfg: DictConfig, boto: Any, requests: Any, run_dir: Path) -> str:
    """List, ask, take down; a resource that fails is named and the rest still go."""
    chosen = targets(inventory.find(boto, cfg.prefix, recent_days=cfg.status_days), str(cfg.cleanup))
    if not chosen:
        print("nothing of this project runs in the region")
        return ""
    print(
        "to take down:",
        *(
            f"  {f.kind} {f.name}"
            + (" (with its scaling, config and models)" if f.kind == "endpoint" else "")
            for f in chosen
        ),
        sep="\n",
    )
    if not agreed(cfg, len(chosen)):
        print("nothing deleted")
        return ""
    failed = []
    for f in chosen:
        try:
            for what in take_down(boto, f.kind, f.name):
                print(what)
        except ClientError as exc:
            failed.append(f"{f.kind} {f.name}: {exc.response.get('Error', {}).get('Message', exc)}")
    if failed:
        raise DogBreedError(f"{len(failed)} not taken down (the rest were): " + "; ".join(failed))
    return ""


COMMAND = Command(key="cleanup", usage="cleanup=all|<name>", send=send)
