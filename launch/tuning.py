"""A SageMaker tuning job over the search space of `conf/launch/hpo/<name>.yaml` (`dogbreed.hparams`)."""

from __future__ import annotations

from typing import Any

from dogbreed.hparams import SearchSpace


def start_tuning(cfg: Any, space: SearchSpace, boto: Any, data_uri: str, workdir: Any) -> None:
    """CreateHyperParameterTuningJob for `space` (the `hpo=` config's) over the plain training job."""
    from sagemaker.train.configs import InputData
    from sagemaker.train.tuner import HyperparameterTuner

    from dogbreed.training.metric_lines import metric_definitions
    from launch.aws import job_name
    from launch.training import model_trainer

    hpo = cfg.hpo
    tuner = HyperparameterTuner(
        model_trainer=model_trainer(cfg, boto, job_name(cfg, "trial", stamp=False), workdir),
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
        inputs=[InputData(channel_name="training", data_source=data_uri)],
        job_name=job_name(cfg, "hpo", max_length=32),  # the API's limit for tuning jobs
        wait=False,
    )
