"""The search space of `conf/hpo/*.yaml` as SageMaker's `ParameterRanges`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCALING = {"log": "Logarithmic", "linear": "Linear", "auto": "Auto"}


def parameter_ranges(params: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """CreateHyperParameterTuningJob's ParameterRanges (values as strings, as the API wants them)."""
    ranges: dict[str, list[dict[str, Any]]] = {
        "ContinuousParameterRanges": [],
        "IntegerParameterRanges": [],
        "CategoricalParameterRanges": [],
    }
    for name, spec in params.items():
        if spec["type"] == "categorical":
            ranges["CategoricalParameterRanges"].append(
                {"Name": name, "Values": [str(v) for v in spec["values"]]}
            )
            continue
        key = "ContinuousParameterRanges" if spec["type"] == "continuous" else "IntegerParameterRanges"
        ranges[key].append(
            {
                "Name": name,
                "MinValue": str(spec["min"]),
                "MaxValue": str(spec["max"]),
                "ScalingType": SCALING[spec.get("scale", "auto")],
            }
        )
    return ranges


def sdk_ranges(params: Mapping[str, Any]) -> dict[str, Any]:
    """The same space as SageMaker SDK parameter objects (what HyperparameterTuner takes)."""
    from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter

    out: dict[str, Any] = {}
    for name, spec in params.items():
        if spec["type"] == "categorical":
            out[name] = CategoricalParameter(list(spec["values"]))
        else:
            kind = ContinuousParameter if spec["type"] == "continuous" else IntegerParameter
            out[name] = kind(spec["min"], spec["max"], scaling_type=SCALING[spec.get("scale", "auto")])
    return out


def start_tuning(cfg: Any, boto: Any, data_uri: str, workdir: Any) -> None:
    """CreateHyperParameterTuningJob for `conf/hpo/<name>.yaml` over the training job of `train=`."""
    from sagemaker.train.configs import InputData
    from sagemaker.train.tuner import HyperparameterTuner

    from dogbreed.metric_lines import metric_definitions
    from launch.aws import job_name
    from launch.training import model_trainer

    hpo = cfg.hpo
    tuner = HyperparameterTuner(
        model_trainer=model_trainer(cfg, boto, job_name(cfg, "trial", stamp=False), workdir),
        objective_metric_name=hpo.objective.metric,
        objective_type=hpo.objective.direction.capitalize(),
        hyperparameter_ranges=sdk_ranges(hpo.params),
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
