"""What a launcher command is: one `Command` per module of `launch/commands/`, with the same few steps.

- `send(cfg, boto, requests, run_dir)`: build the requests and send them (recorded in `requests`, and
  stopped there in a dry run); returns the name of what it created;
- `follow(cfg, boto, name, run_dir)`: wait with a live view and fetch what it leaves (when `wait=true`);
- `replay(cfg, requests, run_dir)`: run what was sent on this machine (`replay=true`, see launch/replay);
- `local(cfg, run_dir)`: the local twin (`instance=local`);
- `cost(cfg)`: the upper bound in USD that a run prints, and what it covers;
- `check(cfg)`: cheap checks that must pass before anything is uploaded or sent (the config's types and
  ranges are `launch.schema`'s, checked before any step);
- `intent(cfg)`: what the requests must carry of the config, `{operation: {request field: (config key,
  value)}}`; `launch.capture.RequestLog` compares each request with it before it is sent, dry run or real.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

# operation → request field (`ResourceConfig.InstanceCount`, `ProductionVariants[0].InstanceType`) →
# (the config key that sets it, the value the request must hold)
Intent = dict[str, dict[str, tuple[str, Any]]]


@dataclass(frozen=True)
class Command:
    """What one launcher command does at each step; a step it lacks is None (and says so when asked)."""

    key: str  # its key on the command line and in conf/launch/launch.yaml
    usage: str  # how it is spelled, for the errors that list the commands
    send: Callable[[DictConfig, Any, Any, Path], str] | None = None
    follow: Callable[[DictConfig, Any, str, Path], None] | None = None
    replay: Callable[[DictConfig, Any, Path], None] | None = None
    local: Callable[[DictConfig, Path], None] | None = None
    cost: Callable[[DictConfig], tuple[float, str]] | None = None  # USD and what it is: "/h (…)"
    check: Callable[[DictConfig], None] | None = None
    intent: Callable[[DictConfig], Intent] | None = None
    replay_sends: bool = True  # False: with replay=true nothing goes to AWS (the replayed endpoint is here)
    bare: bool = False  # True: typed without a value (`status`), read as `<key>=true`

    def chosen(self, cfg: DictConfig) -> bool:
        return cfg.get(self.key) not in (None, "", False)

    def spelled(self, cfg: DictConfig) -> str:
        """`hpo=default`, `invoke=my-endpoint`: as the user typed it."""
        value = cfg.get(self.key)
        if isinstance(value, DictConfig):  # a config group: its option's name
            value = choice(cfg, self.key)
        return f"{self.key}={value}"


def choice(cfg: DictConfig, group: str) -> str:
    """The option of a config group on this line (`hpo` → `default`): from Hydra's node of a config
    composed with it (before the app starts), or from the running app."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    name = OmegaConf.select(cfg, f"hydra.runtime.choices.{group}")
    if name is None and HydraConfig.initialized():
        name = HydraConfig.get().runtime.choices.get(group)
    return name or "…"
