"""Replay a CreateHyperParameterTuningJob request: a few of the training jobs the tuner would start.

Each trial is the definition's training job with its static hyperparameters plus one point sampled from its
ParameterRanges (seeded), every value JSON-quoted as the tuner passes them, and `_tuning_objective_metric`.
The objective is parsed from each job's log with the definition's own metric regex; the results are written
as for a real tuning job (`best_hparams.yaml`, `trials.csv`).
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

from dogbreed.hparams import SearchSpace, TrialResult, write_results
from launch.replay import ReplayError
from launch.replay.jobs import replay_training


def sample(ranges: dict[str, list[dict[str, Any]]], rng: random.Random) -> dict[str, str]:
    """One point of the ranges, as strings (log scales sampled uniformly in log space)."""
    point = {}
    for spec in ranges.get("ContinuousParameterRanges", []):
        low, high = float(spec["MinValue"]), float(spec["MaxValue"])
        if spec.get("ScalingType") in ("Logarithmic", "ReverseLogarithmic"):
            point[spec["Name"]] = str(math.exp(rng.uniform(math.log(low), math.log(high))))
        else:
            point[spec["Name"]] = str(rng.uniform(low, high))
    for spec in ranges.get("IntegerParameterRanges", []):
        point[spec["Name"]] = str(rng.randint(int(spec["MinValue"]), int(spec["MaxValue"])))
    for spec in ranges.get("CategoricalParameterRanges", []):
        point[spec["Name"]] = rng.choice(spec["Values"])
    return point


def trial_request(request: dict[str, Any], number: int, point: dict[str, str]) -> dict[str, Any]:
    """The CreateTrainingJob the tuner would send for one trial."""
    definition = request["TrainingJobDefinition"]
    config = request["HyperParameterTuningJobConfig"]
    metric = config["HyperParameterTuningJobObjective"]["MetricName"]
    tuned = {name: json.dumps(value) for name, value in point.items()}  # the tuner JSON-quotes values
    return {
        "TrainingJobName": f"{request['HyperParameterTuningJobName']}-{number:03d}-replay"[:63],
        "HyperParameters": {
            **definition.get("StaticHyperParameters", {}),
            **tuned,
            "_tuning_objective_metric": json.dumps(metric),
        },
        "AlgorithmSpecification": definition["AlgorithmSpecification"],
        "InputDataConfig": definition["InputDataConfig"],
        "OutputDataConfig": definition["OutputDataConfig"],
        "ResourceConfig": definition["ResourceConfig"],
        "StoppingCondition": definition["StoppingCondition"],
        "RoleArn": definition["RoleArn"],
        **({"Environment": definition["Environment"]} if definition.get("Environment") else {}),
        **(
            {"CheckpointConfig": definition["CheckpointConfig"]} if definition.get("CheckpointConfig") else {}
        ),
    }


def replay_tuning(
    request: dict[str, Any],
    space: SearchSpace,
    s3: Any,
    work: Path,
    out_dir: Path,
    trials: int = 2,
    seed: int = 0,
) -> TrialResult:
    """Replay `trials` trials; write best_hparams.yaml and trials.csv into `out_dir`; return the best."""
    config = request["HyperParameterTuningJobConfig"]
    objective = config["HyperParameterTuningJobObjective"]
    definitions = request["TrainingJobDefinition"]["AlgorithmSpecification"].get("MetricDefinitions", [])
    if objective["MetricName"] not in {d["Name"] for d in definitions}:
        raise ReplayError(
            f"HyperParameterTuningJobObjective.MetricName={objective['MetricName']!r} has no "
            "TrainingJobDefinition.AlgorithmSpecification.MetricDefinitions entry: no trial could report it"
        )
    rng = random.Random(seed)
    results = []
    for number in range(trials):
        point = sample(config["ParameterRanges"], rng)
        started = time.perf_counter()
        job = replay_training(trial_request(request, number, point), s3, work)
        seconds = time.perf_counter() - started
        values = job.metrics.get(objective["MetricName"], [])
        if not values:
            raise ReplayError(
                f"trial {job.name} printed nothing that the objective's regex "
                f"(MetricDefinitions {objective['MetricName']!r}) matches; log: {job.log}"
            )
        results.append(
            TrialResult(job.name, "Completed", values[-1], space.typed(point), len(values), seconds)
        )
    name = request["HyperParameterTuningJobName"]
    best = write_results(
        results, space, objective["MetricName"], objective["Type"], out_dir, f"replayed tuning job {name}"
    )
    print(
        f"replay: best of {trials} trials {best.trial}: "
        f"{objective['MetricName']}={best.objective:.4f} {best.params}"
    )
    return best
