"""`hpo=<conf/launch/hpo name>`: a SageMaker tuning job over that search space, or Optuna here.

The space is validated once (`dogbreed.hparams.SearchSpace`) before anything is uploaded; the tuning job
runs the plain training job of `launch.commands.train` for each trial. When it ends, `best_hparams.yaml`
and `trials.csv` are written as the local search writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dogbreed.hparams import SearchSpace
from launch.command import Command, choice


def space_file(cfg: DictConfig) -> str:
    return f"conf/launch/hpo/{choice(cfg, 'hpo')}.yaml"


def search_space(cfg: DictConfig) -> SearchSpace:
    """The `hpo=` config's space, validated once; errors name its file and the parameter's key."""
    return SearchSpace.from_config(cfg.hpo.params, space_file(cfg))


def check(cfg: DictConfig) -> None:
    """Before anything is uploaded: what a trial composes passes the training schema, its requirements agree
    with its image, the space is well-formed, and each of its bounds is a value training accepts. A tuning
    job's trials get the overrides as hyperparameters, so each needs a name; the local search composes
    them as they are."""
    from dogbreed.training.config import compose_training
    from dogbreed.training.schema import check_search_bounds
    from launch.commands.train import check_image_pins, check_job_config, hyperparameters

    check_job_config(cfg)
    if cfg.instance.name != "local":
        hyperparameters(cfg)
        check_image_pins(cfg)
    base = compose_training([f"+experiment={cfg.experiment}", *cfg.overrides])
    check_search_bounds(base, search_space(cfg), space_file(cfg))


def print_next_step(run_dir: Path) -> None:
    """After a search (real or replayed): the command that trains with its best values."""
    print(
        f"train with them: python launch/sagemaker.py train=default hparams={run_dir / 'best_hparams.yaml'}"
    )


def send(cfg: DictConfig, boto: Any, requests: Any, run_dir: Path) -> str:
    """CreateHyperParameterTuningJob for the space over the plain training job; returns its name."""
    import tempfile

    from sagemaker.core.training.configs import InputData
    from sagemaker.train.tuner import HyperparameterTuner

    from dogbreed.training.metric_lines import metric_definitions
    from launch.aws import job_name
    from launch.capture import keep_member
    from launch.commands.train import model_trainer
    from launch.data import data_channel

    hpo, space = cfg.hpo, search_space(cfg)
    # a seed of 0 never reached the request and the tuning job drew its own (the intent check caught it)
    keep_member(boto, "CreateHyperParameterTuningJob", "HyperParameterTuningJobConfig.RandomSeed", hpo.seed)
    uri = data_channel(cfg, boto, run_dir)
    with tempfile.TemporaryDirectory(prefix="dogbreed-") as workdir:
        tuner = HyperparameterTuner(
            model_trainer=model_trainer(cfg, boto, job_name(cfg, "trial", stamp=False), Path(workdir)),
            objective_metric_name=hpo.objective.metric,
            objective_type=hpo.objective.direction.capitalize(),
            hyperparameter_ranges=space.sdk_ranges(),
            metric_definitions=metric_definitions(),
            strategy=hpo.strategy,
            max_jobs=hpo.max_jobs,
            max_parallel_jobs=hpo.max_parallel_jobs,
            early_stopping_type=hpo.early_stopping,
            random_seed=hpo.seed,
        )
        tuner.tune(
            inputs=[InputData(channel_name="training", data_source=uri)],
            job_name=job_name(cfg, "hpo", max_length=32),  # the API's limit for tuning jobs
            wait=False,
        )
    name = requests.of("CreateHyperParameterTuningJob")[-1]["HyperParameterTuningJobName"]
    print(f"tuning job {name}")
    return name


def follow(cfg: DictConfig, boto: Any, name: str, run_dir: Path) -> None:
    """A live line of the trials, then best_hparams.yaml and trials.csv."""
    from launch import watch

    client, objective = boto.client("sagemaker"), cfg.hpo.objective
    watch.wait_tuning(client, name, objective.metric, cfg.poll_seconds)
    watch.tuning_results(client, name, search_space(cfg), objective.metric, objective.direction, run_dir)
    print_next_step(run_dir)


def replay(cfg: DictConfig, requests: Any, run_dir: Path) -> None:
    """`replay_trials` of the tuner's trials, run here from the request as sent."""
    from launch.replay import s3_client
    from launch.replay.tuning import replay_tuning

    request = requests.of("CreateHyperParameterTuningJob")[-1]
    replay_tuning(
        request,
        search_space(cfg),
        s3_client(cfg),
        run_dir / "replay",
        run_dir,
        cfg.replay_trials,
        cfg.hpo.seed,
    )
    print_next_step(run_dir)


def local(cfg: DictConfig, run_dir: Path) -> None:
    """The same space searched here with Optuna (trials train the head on cached features)."""
    from dogbreed.search.study import run_search
    from dogbreed.training.config import compose_training

    overrides = [f"+experiment={cfg.experiment}", "data.cache_features=true", *cfg.overrides]
    train_cfg = compose_training([*overrides, f"paths.run_dir={run_dir}"])
    study = run_search(train_cfg, cfg.hpo, search_space(cfg), run_dir)
    best = study.best_trial
    print(f"best trial {best.number}: {cfg.hpo.objective.metric}={best.value:.4f} {best.params}")
    print(f"wrote {run_dir / 'best_hparams.yaml'}, {run_dir / 'trials.csv'}, plots *.png")
    print(
        f"train with them: python -m dogbreed.train +experiment={cfg.experiment} "
        f"+hparams={run_dir / 'best_hparams.yaml'}"
    )


def intent(cfg: DictConfig) -> dict[str, dict[str, tuple[str, Any]]]:
    """What the tuning request must carry: the budget, strategy, objective, seed and space, and the plain
    training job of every trial (its tuned hyperparameters are the space's, not static)."""
    from launch.commands.train import job_intent

    hpo, space = cfg.hpo, search_space(cfg)
    config = "HyperParameterTuningJobConfig"
    fields: dict[str, tuple[str, Any]] = {
        f"{config}.ResourceLimits.MaxNumberOfTrainingJobs": ("hpo.max_jobs", hpo.max_jobs),
        f"{config}.ResourceLimits.MaxParallelTrainingJobs": ("hpo.max_parallel_jobs", hpo.max_parallel_jobs),
        f"{config}.Strategy": ("hpo.strategy", hpo.strategy),
        f"{config}.TrainingJobEarlyStoppingType": ("hpo.early_stopping", hpo.early_stopping),
        f"{config}.RandomSeed": ("hpo.seed", hpo.seed),
        f"{config}.HyperParameterTuningJobObjective.MetricName": (
            "hpo.objective.metric",
            hpo.objective.metric,
        ),
        f"{config}.HyperParameterTuningJobObjective.Type": (
            "hpo.objective.direction",
            hpo.objective.direction.capitalize(),
        ),
        **{
            f"{config}.ParameterRanges.{kind}": ("hpo.params", ranges)
            for kind, ranges in space.api_ranges().items()
        },
    }
    trial = job_intent(cfg, "StaticHyperParameters", skip=set(space.names))
    fields |= {f"TrainingJobDefinition.{path}": value for path, value in trial.items()}
    return {"CreateHyperParameterTuningJob": fields}


def cost(cfg: DictConfig) -> tuple[float, str]:
    """Every trial running to its max runtime."""
    from launch.commands.train import cost as one_job

    usd, basis = one_job(cfg)
    return cfg.hpo.max_jobs * usd, f" ({cfg.hpo.max_jobs} trials,{basis.removeprefix(' (')}"


COMMAND = Command(
    key="hpo",
    usage="hpo=default",
    send=send,
    follow=follow,
    replay=replay,
    local=local,
    cost=cost,
    check=check,
    intent=intent,
)
