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
