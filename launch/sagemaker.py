"""SageMaker jobs from the project's Hydra configs — and their local twin.

    python launch/sagemaker.py hpo=default instance=local [experiment=demo] [-- TRAINING OVERRIDES...]

Everything after `--` is a training override (as for `python -m dogbreed.train`), e.g.
`-- data.root=/data/dogImages trainer.max_epochs=5`; it is recorded as `train_overrides` in the config.

`instance=local` runs the search of `conf/hpo/<name>.yaml` on this machine with Optuna (see
`dogbreed.search`) and writes `best_hparams.yaml`, `trials.csv` and plots into the run dir. Feed the
result to training with `python -m dogbreed.train +experiment=local +hparams=<run dir>/best_hparams.yaml`.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `python launch/sagemaker.py` from a checkout imports dogbreed from here

from dogbreed.errors import DogBreedError  # noqa: E402

log = logging.getLogger("launch")


def local_search(cfg: DictConfig, run_dir: Path) -> None:
    from dogbreed.search import run_search

    overrides = [f"+experiment={cfg.train_experiment}", "data.cache_features=true", *cfg.train_overrides]
    train_cfg = compose(config_name="train", overrides=[*overrides, f"paths.run_dir={run_dir}"])
    study = run_search(train_cfg, cfg.hpo, run_dir)
    best = study.best_trial
    print(f"best trial {best.number}: {cfg.hpo.objective.metric}={best.value:.4f} {best.params}")
    print(f"wrote {run_dir / 'best_hparams.yaml'}, {run_dir / 'trials.csv'}, plots *.png")
    print(
        f"train with them: python -m dogbreed.train +experiment={cfg.train_experiment} "
        f"+hparams={run_dir / 'best_hparams.yaml'}"
    )


@hydra.main(version_base="1.3", config_path=str(REPO / "conf"), config_name="launch")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if cfg.instance.name != "local":
            raise DogBreedError(
                f"instance={cfg.instance.name}: SageMaker jobs are not in this version yet; "
                "use instance=local for the local twin"
            )
        if cfg.get("hpo") is None:
            raise DogBreedError("say what to run: hpo=default (the search space in conf/hpo/default.yaml)")
        local_search(cfg, run_dir)
    except DogBreedError as exc:
        log.error("%s", exc)
        sys.exit(2)


def split_argv(argv: list[str]) -> list[str]:
    """Hydra arguments for the launcher.

    `experiment=NAME` becomes `train_experiment=NAME` (`experiment` is also a config group of the training
    app, so Hydra would read it as one), and the training overrides after `--` become `train_overrides`.
    """
    cut = argv.index("--") if "--" in argv else len(argv)
    own = [f"train_{a}" if a.startswith("experiment=") else a for a in argv[:cut]]
    extra = argv[cut + 1 :]
    return [*own, f"train_overrides=[{','.join(json.dumps(o) for o in extra)}]"] if extra else own


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *split_argv(sys.argv[1:])]
    main()
