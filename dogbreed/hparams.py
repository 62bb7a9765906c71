"""The hyperparameter contract: one table between tuning names and Hydra keys, the search space, results.

Everything about hyperparameters that crosses the local/SageMaker seam lives here:
- `HYPERPARAMETERS`: name (as a tuning job, a container's `--name value` and `best_hparams.yaml` spell it)
  → Hydra key of the training config; `BY_KEY` is the reverse. An unknown name is always an error.
- `override`, `apply_hparams`, `with_hparams`, `from_overrides`: the table in both directions.
- `SearchSpace`: a `conf/launch/hpo/*.yaml` file validated once, rendered for Optuna and for SageMaker.
- `write_results`: `trials.csv` and `best_hparams.yaml`, the same columns for the local search and for a
  SageMaker tuning job.

Adding a hyperparameter: an argument of the model (or data module), its default in `conf/`, and one line in
`HYPERPARAMETERS`; to tune it, a line in `conf/launch/hpo/default.yaml`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from dogbreed.atomic import atomic_write_text
from dogbreed.errors import DogBreedError

# Hyperparameter name → Hydra key of the training config (`+` where the key is a config group to add).
HYPERPARAMETERS: dict[str, str] = {
    "experiment": "+experiment",
    "lr": "model.lr",
    "eps": "model.eps",
    "weight_decay": "model.weight_decay",
    "label_smoothing": "model.label_smoothing",
    "scheduler": "model.scheduler",
    "pretrained": "model.pretrained",
    "freeze_backbone": "model.freeze_backbone",
    "bn_recalibration": "model.bn_recalibration",
    "batch_size": "data.batch_size",
    "image_size": "data.image_size",
    "num_workers": "data.num_workers",
    "epochs": "trainer.max_epochs",
    "seed": "seed",
    "debug": "debug",
    "stop_on": "debug.stop_on",
}
BY_KEY: dict[str, str] = {key.lstrip("+"): name for name, key in HYPERPARAMETERS.items()}
# Set by SageMaker itself, not by the user: accepted and ignored.
RESERVED_PREFIXES = ("sagemaker_", "_tuning_objective_metric")


def check_names(names: Iterable[str], where: str = "") -> None:
    """Every name is in the table, or an error lists the unknown and the known ones."""
    unknown = sorted(set(names) - set(HYPERPARAMETERS))
    if unknown:
        place = f" in {where}" if where else ""
        raise DogBreedError(
            f"unknown hyperparameter(s) {unknown}{place}; known: {', '.join(sorted(HYPERPARAMETERS))}"
        )


def hydra_value(raw: str) -> str:
    """`"64"` → `64`, `0.001` → `0.001`, `true` → `true`: undo JSON quoting, keep Hydra's literal syntax."""
    value: object = raw
    while isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if decoded == value:
            return value
        value = decoded
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def override(name: str, raw: str) -> str:
    """The Hydra override for one hyperparameter as a job passes it (a string, maybe JSON-quoted)."""
    check_names([name])
    return f"{HYPERPARAMETERS[name]}={hydra_value(raw)}"


def apply_hparams(cfg: DictConfig, values: Mapping[str, Any]) -> DictConfig:
    """A copy of `cfg` with typed hyperparameter values set at their Hydra keys."""
    check_names(values)
    cfg = cfg.copy()
    with open_dict(cfg):
        for name, value in values.items():
            OmegaConf.update(cfg, HYPERPARAMETERS[name].lstrip("+"), value)
    return cfg


def read_hparams(path: str | Path) -> dict[str, Any]:
    """A `best_hparams.yaml` (or any name → value file), checked against the table."""
    path = Path(path)
    if not path.is_file():
        raise DogBreedError(f"hparams file {path} does not exist")
    try:
        values = OmegaConf.to_container(OmegaConf.load(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DogBreedError(f"hparams file {path} is not valid YAML: {problem}{where}") from None
    if not isinstance(values, dict):
        raise DogBreedError(f"{path} must map hyperparameter names to values, e.g. `lr: 0.001`")
    check_names(values, str(path))
    return values


def with_hparams(cfg: DictConfig, path: str | Path) -> DictConfig:
    """`+hparams=PATH` on a training command line: apply a `best_hparams.yaml`."""
    return apply_hparams(cfg, read_hparams(path))


def from_overrides(overrides: Sequence[str], skip: Iterable[str] = ()) -> dict[str, str]:
    """Training overrides (`model.lr=0.01`) as hyperparameters (`lr: "0.01"`); keys in `skip` are left out."""
    values = {}
    for item in overrides:
        key, _, value = item.partition("=")
        key = key.lstrip("+")
        if key in skip:
            continue
        if key not in BY_KEY:
            known = ", ".join(sorted(BY_KEY))
            raise DogBreedError(f"training override {key!r} has no hyperparameter name; use one of: {known}")
        values[BY_KEY[key]] = value
    return values


SCALES = {"log": "Logarithmic", "linear": "Linear", "auto": "Auto"}
TYPES = {
    "continuous": {"min", "max", "scale"},
    "integer": {"min", "max", "scale"},
    "categorical": {"values"},
}


@dataclass(frozen=True)
class Param:
    """One dimension of a search space."""

    name: str
    type: str
    min: float | None = None
    max: float | None = None
    scale: str = "auto"
    values: tuple[Any, ...] = ()

    def typed(self, value: Any) -> Any:
        """A value as this parameter's type (SageMaker reports tuned values as strings)."""
        if self.type == "categorical":
            return next((v for v in self.values if str(v) == str(value)), value)
        return int(value) if self.type == "integer" else float(value)


@dataclass(frozen=True)
class SearchSpace:
    """The `params:` block of a `conf/launch/hpo/*.yaml`, validated once (`from_config`)."""

    params: tuple[Param, ...]

    @classmethod
    def from_config(cls, params: Mapping[str, Any], source: str = "the search space") -> SearchSpace:
        """Every name in the table, every type known, every field expected; errors name the file and key."""
        out = []
        for name, spec in params.items():
            where = f"{source}: params.{name}"
            if name not in HYPERPARAMETERS:
                raise DogBreedError(
                    f"{where}: not a hyperparameter; known: {', '.join(sorted(HYPERPARAMETERS))}"
                )
            kind = spec.get("type")
            if kind not in TYPES:
                raise DogBreedError(f"{where}: type must be one of {', '.join(TYPES)}, got {kind!r}")
            extra = set(spec) - TYPES[kind] - {"type"}
            if extra:
                raise DogBreedError(f"{where}: {sorted(extra)} do not apply to a {kind} parameter")
            if kind == "categorical":
                if not spec.get("values"):
                    raise DogBreedError(f"{where}: a categorical parameter needs a non-empty `values` list")
                out.append(Param(name, kind, values=tuple(spec["values"])))
                continue
            scale = spec.get("scale", "auto")
            if scale not in SCALES or "min" not in spec or "max" not in spec or spec["min"] >= spec["max"]:
                raise DogBreedError(f"{where}: needs min < max and scale in {list(SCALES)}")
            if scale == "log" and spec["min"] <= 0:
                raise DogBreedError(f"{where}: a log scale needs min > 0")
            out.append(Param(name, kind, spec["min"], spec["max"], scale))
        return cls(tuple(out))

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def typed(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Tuned values (strings from SageMaker, or Optuna's) typed as the space declares them."""
        by_name = {p.name: p for p in self.params}
        return {name: by_name[name].typed(value) for name, value in values.items() if name in by_name}

    def optuna(self) -> dict[str, Any]:
        """As Optuna distributions (log scale and categorical choices kept)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        kinds = {"continuous": FloatDistribution, "integer": IntDistribution}
        return {
            p.name: CategoricalDistribution(list(p.values))
            if p.type == "categorical"
            else kinds[p.type](p.min, p.max, log=p.scale == "log")
            for p in self.params
        }

    def api_ranges(self) -> dict[str, list[dict[str, Any]]]:
        """As a tuning request's `ParameterRanges` spells them (bounds and choices as strings)."""
        kinds = {"continuous": "ContinuousParameterRanges", "integer": "IntegerParameterRanges"}
        out: dict[str, list[dict[str, Any]]] = {}
        for p in self.params:
            if p.type == "categorical":
                entry = {"Name": p.name, "Values": [str(v) for v in p.values]}
                out.setdefault("CategoricalParameterRanges", []).append(entry)
            else:
                entry = {
                    "Name": p.name,
                    "MinValue": str(p.min),
                    "MaxValue": str(p.max),
                    "ScalingType": SCALES[p.scale],
                }
                out.setdefault(kinds[p.type], []).append(entry)
        return out

    def sdk_ranges(self) -> dict[str, Any]:
        """As SageMaker SDK parameter objects (what `HyperparameterTuner` takes)."""
        from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter

        kinds = {"continuous": ContinuousParameter, "integer": IntegerParameter}
        return {
            p.name: CategoricalParameter(list(p.values))
            if p.type == "categorical"
            else kinds[p.type](p.min, p.max, scaling_type=SCALES[p.scale])
            for p in self.params
        }


@dataclass
class TrialResult:
    """One trial, wherever it ran: an Optuna trial number or a SageMaker training job name."""

    trial: str
    state: str
    objective: float | None
    params: dict[str, Any]
    epochs: int | None = None
    seconds: float | None = None


def write_results(
    trials: Sequence[TrialResult], space: SearchSpace, metric: str, direction: str, out_dir: Path, source: str
) -> TrialResult:
    """`trials.csv` (every trial) and `best_hparams.yaml` (typed values of the best); returns the best."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["trial", "state", metric, *space.names, "epochs", "seconds"])
    for t in trials:
        seconds = f"{t.seconds:.2f}" if t.seconds is not None else ""
        objective = "" if t.objective is None else t.objective
        epochs = "" if t.epochs is None else t.epochs
        writer.writerow(
            [t.trial, t.state, objective, *(t.params.get(n, "") for n in space.names), epochs, seconds]
        )
    atomic_write_text(out_dir / "trials.csv", buf.getvalue())
    scored = [t for t in trials if t.state.upper() in ("COMPLETE", "COMPLETED") and t.objective is not None]
    scored = [t for t in scored if not math.isnan(t.objective)]
    if not scored:
        raise DogBreedError(f"no trial of {source} completed with a {metric}; see {out_dir / 'trials.csv'}")
    pick = max if direction.lower().startswith("max") else min
    best = pick(scored, key=lambda t: t.objective)
    header = f"# best of {source} ({len(trials)} trials): trial {best.trial}, {metric}={best.objective:.6f}"
    values = space.typed(best.params)
    atomic_write_text(
        out_dir / "best_hparams.yaml", header + "\n" + OmegaConf.to_yaml(OmegaConf.create(values))
    )
    return best
