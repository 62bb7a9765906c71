"""Training entry point: `python -m dogbreed.train [+experiment=local|demo] [key=value ...]`.

Fits, tests the best checkpoint (by `val/acc`), and writes into the run dir: `checkpoints/`,
`config.yaml`, `metrics.csv`, `tensorboard/`, the `model/` artifact and `complete.json`. Prints the metric
lines of `dogbreed.training.metric_lines` for tuning jobs. Inside a SageMaker job it also takes `--name value`
hyperparameters and `SM_*` variables (see `dogbreed.container`). The work is
`dogbreed.training.run.run`; this module only turns a command line into a call and an exit code.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from dogbreed.container import hydra_argv
from dogbreed.errors import exit_on_user_error
from dogbreed.processes import die_with_parent
from dogbreed.schema import one_line_compose_errors, overrides_to_check
from dogbreed.training.config import CONF_DIR, TRAIN_CONFIG, compose_training
from dogbreed.training.run import run
from dogbreed.training.rundir import check_folders
from dogbreed.training.schema import check_training

log = logging.getLogger("dogbreed.train")


# Exit codes: 0 done (or stopped by SIGTERM: SageMaker restarts the job and it resumes), 2 a user error,
# 3 a rule of debug.stop_on stopped training (a tuning job counts the trial as failed and stops paying).
STOPPED_BY_RULE = 3


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=TRAIN_CONFIG)
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(log=log):
        result = run(cfg)
    if result.status == "stopped by rule":
        sys.exit(STOPPED_BY_RULE)


def check_command_line(argv: list[str]) -> None:
    """What Hydra would compose from `argv`, checked against the schema (with its `+hparams=` file) and its
    folders checked writable (unless it only prints the config), before Hydra makes the run dir: a wrong
    value creates nothing."""
    checked = overrides_to_check(argv)
    if checked is None:
        return
    overrides, printing = checked
    with one_line_compose_errors():
        cfg = compose_training(overrides, with_hydra=True)
    check_training(cfg)
    if not printing:
        check_folders(cfg)


def cli() -> None:
    """Translate SageMaker-style arguments and `SM_*` variables, check them, then run the Hydra app."""
    if "LOCAL_RANK" in os.environ:  # a DDP worker (Lightning's or torchrun's): never outlive the launcher
        die_with_parent()
    with exit_on_user_error():
        sys.argv = [sys.argv[0], *hydra_argv(sys.argv[1:], os.environ)]
        check_command_line(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
