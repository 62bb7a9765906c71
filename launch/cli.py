"""SageMaker jobs from the project's Hydra configs — and their local twin: `python -m launch …`.

    python -m launch hpo=default                      # a tuning job (20 jobs, 2 in parallel)
    python -m launch train=default [hparams=best_hparams.yaml]
    python -m launch train=debugger                   # with Debugger and Profiler
    python -m launch deploy=default                   # endpoint from the latest training job
    python -m launch invoke=<endpoint> image=photo.jpg
    python -m launch deploy=serverless                # a serverless endpoint (pay per request)
    python -m launch deploy=default deploy.autoscaling.max=4 [deploy.expires_after=8]
    python -m launch transform=default input=s3://…/photos/|<folder>   # batch transform → predictions.csv
    python -m launch delete=<endpoint>                # scaling, endpoint, endpoint config and model
    python -m launch status                           # what this project runs here and what it costs
    python -m launch cleanup=all|<name> [yes=true]    # take it down (listed first, asked)
    common: instance=<conf/launch/instance name> experiment=<name> dry_run=true wait=false region=…
            role_arn=… bucket=…, and training overrides (data.root=… model.lr=…) anywhere on the line

(`python launch/sagemaker.py …` is the same command.) The launcher's configs are `conf/launch/`. A
`key=value` whose key belongs to the training config (`conf/train.yaml`: data, model, trainer, …) is a
training override wherever it stands (`--` still works); a key neither knows is an error naming both sets.
Exactly one command per line (`launch/commands/`): `instance=local` runs its local twin, otherwise it is
sent to SageMaker, then replayed here (`replay=true`) or followed (`wait=true`). `dry_run=true` sends
nothing: every request goes to `<run dir>/requests/` and the upper-bound cost is printed.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dogbreed.errors import DogBreedError, exit_on_user_error
from dogbreed.training.config import CONF_DIR, config_keys, training_keys
from launch.command import Command
from launch.commands import COMMANDS, pick

LAUNCH_CONF = CONF_DIR / "launch"

log = logging.getLogger("launch")


def local(cfg: DictConfig, command: Command, run_dir: Path) -> None:
    """The local twin: Optuna for tuning, a subprocess for training, dogbreed.serve for the endpoint."""
    if command.local is None:
        raise DogBreedError(f"instance=local has no {command.key}= (a local server has nothing to delete)")
    command.local(cfg, run_dir)


def cloud(cfg: DictConfig, run_dir: Path, command: Command | None = None) -> None:
    """Send the command's requests (recorded; stopped in a dry run), then replay or follow them."""
    from launch.aws import sdk_environment, session
    from launch.inventory import warn_expired

    command = command or pick(cfg)
    if cfg.replay and cfg.dry_run:
        raise DogBreedError(
            "replay=true runs the requests that were sent; a dry run sends none: drop dry_run=true"
        )
    if cfg.replay and not command.replay_sends:  # e.g. invoke: the replayed endpoint answers here
        command.replay(cfg, None, run_dir)
        return
    if command.check is not None:  # before anything is uploaded or sent
        command.check(cfg)
    sdk_environment(cfg.telemetry, run_dir)
    boto, requests = session(cfg, run_dir)
    if not cfg.dry_run:  # every command says when an endpoint is past its deploy.expires_after
        warn_expired(boto, cfg.prefix)
    if command.intent is not None:
        requests.expect(command.intent(cfg))
    name = command.send(cfg, boto, requests, run_dir)
    if cfg.replay and command.replay is not None:
        command.replay(cfg, requests, run_dir)
    elif cfg.wait and not cfg.dry_run and command.follow is not None:
        command.follow(cfg, boto, name, run_dir)
    if command.cost is not None:
        usd, basis = command.cost(cfg)
        print(f"cost upper bound: ${usd:.2f}{basis}")
    if cfg.dry_run:
        for path in sorted((run_dir / "requests").glob("*.json")):
            if not path.name.startswith("PutObject"):
                print(f"--- {path.name}\n{path.read_text()}")
        print(f"dry run: {len(requests.requests)} requests written to {run_dir / 'requests'}, none sent")


@hydra.main(version_base="1.3", config_path=str(LAUNCH_CONF), config_name="launch")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with exit_on_user_error(log=log):
        command = pick(cfg)
        if cfg.instance.name == "local":
            local(cfg, command, run_dir)
        else:
            cloud(cfg, run_dir, command)


def route_argv(argv: list[str]) -> list[str]:
    """The launcher's Hydra arguments, with training overrides gathered into `overrides=[…]`.

    A `key=value` goes to the launcher when `conf/launch/launch.yaml` knows its first part, to the training
    run when `conf/train.yaml` does (wherever it stands; everything after `--` too); anything else is an
    error naming both sets of keys.
    """
    cut = argv.index("--") if "--" in argv else len(argv)
    own, training = [], list(argv[cut + 1 :])
    launcher_keys, train_keys = config_keys(LAUNCH_CONF / "launch.yaml"), training_keys()
    for arg in argv[:cut]:
        if arg in COMMANDS and COMMANDS[arg].bare:  # `status`: a command that takes no value
            own.append(f"{arg}=true")
            continue
        if arg.startswith("-") or "=" not in arg:  # Hydra's flags (--cfg job, -m …)
            own.append(arg)
            continue
        root = arg.split("=", 1)[0].lstrip("+~").split(".", 1)[0]
        if root in launcher_keys:
            own.append(arg)
        elif root in train_keys:
            training.append(arg)
        else:
            raise DogBreedError(
                f"unknown key {root!r} in {arg!r}: the launcher knows {', '.join(sorted(launcher_keys))}; "
                f"training runs know {', '.join(sorted(train_keys - launcher_keys))}"
            )
    return [*own, f"overrides=[{','.join(json.dumps(o) for o in training)}]"] if training else own


def check_command_line(argv: list[str]) -> None:
    """Before the Hydra app makes its run dir, and before any download, upload or request: the launcher's
    settings against its schema (all that `--cfg job` needs), one command on the line, that command's
    `check` (the training config a job composes), the run dir writable."""
    from hydra import compose, initialize_config_dir

    from dogbreed.schema import one_line_compose_errors, overrides_to_check
    from dogbreed.storage import unwritable
    from launch.schema import check_launch

    checked = overrides_to_check(argv)
    if checked is None:
        return
    overrides, printing = checked
    with one_line_compose_errors(), initialize_config_dir(config_dir=str(LAUNCH_CONF), version_base="1.3"):
        cfg = compose(config_name="launch", overrides=overrides, return_hydra_config=True)
        check_launch(cfg)
        if printing:  # `--cfg job`: the values only; printing needs no command
            return
        command = pick(cfg)
        if command.check is not None:
            command.check(cfg)
    why = unwritable(cfg.hydra.run.dir)
    if why:
        raise DogBreedError(f"cannot write the run dir (hydra.run.dir) {cfg.hydra.run.dir}: {why}")


def run() -> None:
    """The command line: training overrides routed and checked, then the Hydra app."""
    with exit_on_user_error():
        sys.argv = [sys.argv[0], *route_argv(sys.argv[1:])]
        check_command_line(sys.argv[1:])
    main()
