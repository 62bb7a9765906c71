"""The launcher's commands, one module each (`launch.command.Command`), chosen by their key on the line.

`hpo=default`, `train=debugger`, `deploy=default|serverless`, `invoke=<endpoint>`, `delete=<endpoint>`,
`transform=default`, `status`, `cleanup=all|<name>`: exactly one per line. A new command is a new module
here and one entry in `COMMANDS`.
"""

from __future__ import annotations

from omegaconf import DictConfig

from dogbreed.errors import DogBreedError
from launch.command import Command
from launch.commands import cleanup, delete, deploy, hpo, invoke, status, train, transform

COMMANDS: dict[str, Command] = {
    c.key: c
    for c in (
        hpo.COMMAND,
        train.COMMAND,
        deploy.COMMAND,
        invoke.COMMAND,
        delete.COMMAND,
        transform.COMMAND,
        status.COMMAND,
        cleanup.COMMAND,
    )
}


def pick(cfg: DictConfig) -> Command:
    """The one command this line asks for; none, or two, is an error naming what to do."""
    chosen = [c for c in COMMANDS.values() if c.chosen(cfg)]
    if len(chosen) > 1:
        raise DogBreedError(
            f"one command per line: {' and '.join(c.spelled(cfg) for c in chosen)} were both given; "
            "run them one after the other"
        )
    if not chosen:
        raise DogBreedError(f"say what to run: {', '.join(c.usage for c in COMMANDS.values())}")
    return chosen[0]
