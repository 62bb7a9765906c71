"""Checking a composed config against its schema, with one line per wrong setting.

Both apps declare their settings' types and ranges as pydantic models: the training app in
`dogbreed.training.schema`, the launcher in `launch.schema`. Defaults stay in `conf/` (one place to grep,
Hydra's groups and experiments); the schema says what a value may be. `validate` turns pydantic's report into
`model.lr=-1: must be > 0 (AdamW's step size)` — the key, the value as typed, what is allowed and why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from dogbreed.errors import DogBreedError


class ConfigError(DogBreedError):
    """A setting has the wrong type or is out of range."""


class Section(BaseModel):
    """A config section: every key declared, no type coerced (Hydra already typed the values), no NaN."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, populate_by_name=True)


def _as_text(value: Any) -> Any:
    """A folder called `2024` is a path too (Hydra reads it as a number)."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


Text = Annotated[str, BeforeValidator(_as_text)]  # paths, names: numbers typed for them are kept as text

S = TypeVar("S", bound=BaseModel)


def shown(value: Any) -> str:
    """A value as the user would type it on a command line."""
    if isinstance(value, str):  # quoted when it is empty or has spaces or control characters (one line)
        return value if value.isprintable() and value and " " not in value else json.dumps(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return json.dumps(value, default=str).replace('"', "")


def _limits(ctx: dict[str, Any]) -> dict[str, str]:
    """Limits and choices as a user types them: `0`, not `0.0`; `false`, not `False`."""
    out = {k: shown(v) for k, v in ctx.items() if k != "expected"}
    if "expected" in ctx:
        out["expected"] = str(ctx["expected"]).replace("False", "false").replace("True", "true")
        out["expected"] = out["expected"].replace("None", "null")
    return out


ALLOWED = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be ≥ {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be ≤ {le}",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "literal_error": "must be one of {expected}",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "extra_forbidden": "is not a setting here",
    "missing": "is missing",
}


def _key(loc: tuple[Any, ...], values: Any) -> tuple[str, Any]:
    """The dotted key of an error's location and the value there (pydantic appends union members and
    validator names to a location: those are not keys)."""
    parts, value = [], values
    for part in loc:
        inside = isinstance(value, list) and isinstance(part, int) and part < len(value)
        if inside or (isinstance(value, Mapping) and part in value):
            value = value[part]
            parts.append(str(part))
    return ".".join(parts), value


def describe(
    errors: list[dict[str, Any]], values: Mapping[str, Any], prefix: str, why: dict[str, str]
) -> str:
    """One line for pydantic's errors: per key, its value, what is allowed and why (`; ` between keys)."""
    allowed: dict[str, list[str]] = {}  # `model.lr=-1` → ["must be > 0"]
    keys: dict[str, str] = {}
    for error in errors:
        key, value = _key(error["loc"], values)
        full = f"{prefix}{key}" if key else prefix.rstrip(".")
        if error["type"] == "value_error":  # a cross-field check: its message starts with the key's last part
            message = str(error["ctx"]["error"])
            allowed.setdefault(f"{full}.{message}" if full else message, [])
            continue
        head = full if error["type"] == "missing" else f"{full}={shown(value)}"
        template = ALLOWED.get(error["type"])
        said = template.format(**_limits(error.get("ctx", {}))) if template else error["msg"].lower()
        allowed.setdefault(head, []).append(said)
        keys[head] = key

    def line(head: str) -> str:
        if not allowed[head]:
            return head
        key = keys[head]  # a mapping's entry (`environment.X`) has its mapping's reason
        reason = why.get(key) or why.get(key.rpartition(".")[0])
        return f"{head}: {' or '.join(dict.fromkeys(allowed[head]))}" + (f" ({reason})" if reason else "")

    return "; ".join(line(head) for head in allowed)


def reasons(schema: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Every field's description by dotted key: why its range is what it is."""
    out = {}
    for name, field in schema.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        if field.description:
            out[key] = field.description
        for kind in _models(field.annotation):
            out |= reasons(kind, f"{key}.")
    return out


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def validate(schema: type[S], values: Mapping[str, Any], prefix: str = "") -> S:
    """`values` as `schema`, or a ConfigError of one line naming each wrong key (`prefix` goes before it)."""
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(describe(exc.errors(), values, prefix, reasons(schema))) from None


def overrides_to_check(argv: list[str]) -> tuple[list[str], bool] | None:
    """The overrides of a Hydra app's command line, and whether the line only prints the config
    (`--cfg job|hydra|all`): its values are checked all the same, so a bad one is one line and exit 2
    rather than a printed config the run would refuse. None when the line asks for another of Hydra's
    own modes (`--help`, `--info`, `-m` sweeps, another config): those are Hydra's to run."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)
    modes = (args.help, args.hydra_help, args.info, args.multirun, args.shell_completion)
    if any(modes) or args.config_path or args.config_name or args.config_dir:
        return None
    return list(args.overrides), args.cfg is not None


@contextmanager
def one_line_compose_errors() -> Iterator[None]:
    """Hydra's and OmegaConf's composition errors (a key not in the config, a bad override) in their own
    words, on one line."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(" ".join(line.strip() for line in str(exc).splitlines() if line.strip())) from exc
