"""Issue 21: every value a user types is checked where it enters — both apps' schemas, every key.

Most cases validate in this process (composing costs milliseconds); a few subprocesses prove that the
command lines (`python -m dogbreed.train`, the launcher) stop with one line, exit 2 and nothing created.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from dogbreed.container import hydra_argv
from dogbreed.hparams import HYPERPARAMETERS
from dogbreed.schema import ConfigError, validate
from dogbreed.training.config import CONF_DIR, compose_training
from dogbreed.training.schema import MIN_IMAGE_SIZE, Training, check_training, plain
from launch.schema import Launch, check_launch
from tests.conftest import HANG_GUARD_S, run_launch, run_train


def leaves(schema: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every scalar key a schema declares (`model.lr`), with its field; nested sections walked."""
    for name, field in schema.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        sections = [k for k in kinds(field.annotation) if isinstance(k, type) and issubclass(k, BaseModel)]
        if sections:  # the instance union: the cloud instance's keys
            yield from leaves(max(sections, key=lambda s: len(s.model_fields)), f"{key}.")
        elif not key.endswith(("_target_", "params", "overrides")):
            yield key, field


def bounds(field: FieldInfo) -> dict[str, float]:
    return {k: getattr(m, k) for m in field.metadata for k in ("gt", "ge", "lt", "le") if hasattr(m, k)}


def kinds(annotation: Any) -> set[Any]:
    """The types a field accepts, through unions and `Annotated`."""
    inner = get_args(annotation)
    if get_origin(annotation) in (list, dict):
        return {get_origin(annotation)}
    if not inner:
        return {annotation}
    if hasattr(annotation, "__metadata__"):  # Annotated[str, …]
        return kinds(inner[0])
    return {k for arg in inner for k in kinds(arg)}


def bad_values(field: FieldInfo) -> list[Any]:
    """A wrong type, then a zero, a negative and an absurd value where the field's range excludes them."""
    wrong = [[1, 2]] if str in kinds(field.annotation) else ["abc"]
    limits = bounds(field)
    low = limits.get("gt", limits.get("ge", None))
    numbers = []
    if low is not None:
        numbers += [0] if ("gt" in limits and low >= 0) or ("ge" in limits and low > 0) else []
        numbers += [-5] if low >= 0 else []
    if "le" in limits or "lt" in limits:
        numbers.append(10**12)
    return wrong + numbers


TRAINING_BASE = ["+experiment=demo", "debug=on", "paths.run_dir=x"]
TRAINING_CASES = [
    (key, value) for key, field in leaves(Training) for value in bad_values(field) if key != "hparams"
]


def training_error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        check_training(compose_training([*TRAINING_BASE, *overrides]))
    return str(err.value)


def override(key: str, value: Any) -> str:
    return f"++{key}={json.dumps(value) if not isinstance(value, str) else value}"  # ++: set or add


@pytest.mark.parametrize(("key", "value"), TRAINING_CASES, ids=[f"{k}={v}" for k, v in TRAINING_CASES])
def test_every_training_key_refuses_a_wrong_value_naming_it(key: str, value: Any) -> None:
    said = training_error([override(key, value)])
    assert "\n" not in said and said.startswith(f"{key}="), said


def test_the_issues_values_are_refused_with_what_is_allowed() -> None:
    assert (
        training_error(["model.lr=-1"])
        == "model.lr=-1: must be > 0 (AdamW's step size; 0 would never move a weight)"
    )
    assert training_error(["model.lr=abc"]).startswith("model.lr=abc: must be a number")
    assert training_error(["data.batch_size=0"]) == "data.batch_size=0: must be ≥ 1 (images per step)"
    assert training_error(["data.num_workers=-1"]).startswith("data.num_workers=-1: must be ≥ 0")
    assert training_error(["trainer.max_epochs=0"]).startswith("trainer.max_epochs=0: must be ≥ 1")
    assert training_error(["data.image_size=8"]).startswith(f"data.image_size=8: must be ≥ {MIN_IMAGE_SIZE}")
    assert "stride-2" in training_error(["data.image_size=8"])
    assert training_error(["model.eps=0"]).startswith("model.eps=0: must be > 0")
    assert training_error(["model.weight_decay=-0.1"]).startswith("model.weight_decay=-0.1: must be ≥ 0")
    check_training(compose_training([*TRAINING_BASE, "data.image_size=64"]))  # the tests' size passes


def test_sagemaker_hyperparameters_are_checked_as_the_job_gets_them() -> None:
    for argv, key in [
        (["--lr", "-1"], "model.lr=-1"),
        (["--batch-size", '"0"'], "data.batch_size=0"),
        (["--epochs", "0"], "trainer.max_epochs=0"),
        (["--image_size", '"4"'], "data.image_size=4"),
        (["--num-workers", "-2"], "data.num_workers=-2"),
    ]:
        assert training_error(hydra_argv(argv, {})).startswith(key)


def test_hparams_files_are_checked_and_named(tmp_path: Path) -> None:
    negative = tmp_path / "best_hparams.yaml"
    negative.write_text("lr: -0.1\nbatch_size: 64\n")
    said = training_error([f"+hparams={negative}"])
    assert said.startswith("model.lr=-0.1: must be > 0") and said.endswith(f"(from +hparams={negative})")
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: [0.1\nbatch_size: {")
    with pytest.raises(Exception, match=r"is not valid YAML: .*\(line 2, column \d+\)") as err:
        check_training(compose_training([*TRAINING_BASE, f"+hparams={broken}"]))
    assert "\n" not in str(err.value)


# Every hyperparameter a `+hparams=` file or a SageMaker job can carry (dogbreed.hparams' table), with the
# schema's bad values for its key: the same one line, naming the key, through both doors.
FIELDS = dict(leaves(Training))
HPARAM_CASES = [
    (name, key, value)
    for name, key in HYPERPARAMETERS.items()
    if key in FIELDS
    for value in bad_values(FIELDS[key])
]


@pytest.mark.parametrize(("name", "key", "value"), HPARAM_CASES, ids=[f"{n}={v}" for n, _, v in HPARAM_CASES])
def test_every_hyperparameter_refuses_a_wrong_value_from_a_file_and_from_sagemaker(
    tmp_path: Path, name: str, key: str, value: Any
) -> None:
    hparams = tmp_path / "best_hparams.yaml"
    hparams.write_text(yaml.safe_dump({name: value}))
    said = training_error([f"+hparams={hparams}"])
    assert "\n" not in said and said.startswith(f"{key}=") and said.endswith(f"(from +hparams={hparams})")
    # SageMaker passes every hyperparameter as a string, JSON-encoded by the SDK: `--name value`
    said = training_error(hydra_argv([f"--{name}", json.dumps(value)], {}))
    assert "\n" not in said and said.startswith(f"{key}="), said


def training_values() -> dict[str, Any]:
    return plain(compose_training(TRAINING_BASE))


def set_key(values: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    node = values
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return values


TRAINING_KEYS = [key for key, _ in leaves(Training)]
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(TRAINING_KEYS), value=ANY_VALUE)
def test_any_value_at_any_training_key_passes_or_is_one_line_naming_it(key: str, value: Any) -> None:
    values = set_key(training_values(), key, value)
    try:
        validate(Training, values)
    except ConfigError as exc:
        # a pair's rule (small_threshold below large_threshold) names the pair's other key, and this one
        parent, _, leaf = key.rpartition(".")
        said = str(exc)
        named = said.startswith(key) or (bool(parent) and said.startswith(parent) and leaf in said)
        assert "\n" not in str(exc) and named, str(exc)


def launch_cfg(overrides: list[str]) -> DictConfig:
    """The launcher's config with every group chosen (serverless keys live in deploy=serverless)."""
    from hydra import compose, initialize_config_dir

    deploy = (
        "serverless" if any(o.lstrip("+~").startswith("deploy.serverless.") for o in overrides) else "default"
    )
    groups = ["hpo=default", "train=debugger", f"deploy={deploy}", "transform=default"]
    with initialize_config_dir(config_dir=str(CONF_DIR / "launch"), version_base="1.3"):
        return compose("launch", [*groups, *overrides])


LAUNCH_CASES = [(key, value) for key, field in leaves(Launch) for value in bad_values(field)]


@pytest.mark.parametrize(("key", "value"), LAUNCH_CASES, ids=[f"{k}={v}" for k, v in LAUNCH_CASES])
def test_every_launcher_key_refuses_a_wrong_value_naming_it(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        check_launch(launch_cfg([override(key, value)]))
    said = str(err.value)
    assert "\n" not in said and said.startswith(f"{key}="), said


def test_the_issues_launcher_values_are_refused() -> None:
    for key, message in [
        ("hpo.max_jobs=0", "hpo.max_jobs=0: must be ≥ 1"),
        ("instance.count=0", "instance.count=0: must be ≥ 1"),
        ("deploy.initial_instance_count=0", "deploy.initial_instance_count=0: must be ≥ 1"),
        ("hpo.max_parallel_jobs=21", "hpo.max_parallel_jobs=21: must be ≤ max_jobs (20)"),
        (
            "hpo.strategy=Smart",
            "hpo.strategy=Smart: must be one of 'Bayesian', 'Random', 'Hyperband' or 'Grid'",
        ),
    ]:
        with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
            check_launch(launch_cfg([key]))
    check_launch(launch_cfg([]))
    check_launch(launch_cfg(["instance=local"]))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{lr: {type: continuous, min: 0.0, max: 0.1, scale: linear}}", "params.lr: model.lr=0: must be > 0"),
        (
            "{batch_size: {type: categorical, values: [0, 32]}}",
            "params.batch_size: data.batch_size=0: must be ≥ 1",
        ),
        ("{lr: {type: continuous, min: 0.1, max: 0.01, scale: log}}", "params.lr: needs min < max"),
    ],
)
def test_search_space_bounds_are_checked_against_the_training_schema(params: str, message: str) -> None:
    from launch.commands.hpo import check

    cfg = launch_cfg([f"hpo.params={params}", "experiment=demo"])
    with pytest.raises(Exception, match=message):
        check(cfg)


# -- through the command lines: one line, exit 2, nothing created ------------------------------------------


def one_error_line(result) -> str:
    text = result.stdout + result.stderr
    assert result.returncode == 2, text[-2000:]
    assert "Traceback" not in text
    (line,) = [line for line in text.splitlines() if line.strip()]
    return line


@pytest.mark.parametrize(
    "args",
    [["model.lr=-1"], ["data.batch_size=0"], ["--lr", "-1"], ["--image-size", '"8"']],
    ids=["cli-lr", "cli-batch", "sagemaker-lr", "sagemaker-image"],
)
def test_the_training_command_stops_before_creating_anything(tmp_path: Path, args: list[str]) -> None:
    run_dir = tmp_path / "run"
    line = one_error_line(
        run_train(["+experiment=demo", f"hydra.run.dir={run_dir}", *args], timeout=HANG_GUARD_S)
    )
    assert line.startswith(("error: model.lr=-1", "error: data.batch_size=0", "error: data.image_size=8"))
    assert not run_dir.exists()


def test_a_broken_hparams_file_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "best_hparams.yaml"
    broken.write_text("lr: [0.1\n")
    line = one_error_line(
        run_train(["+experiment=demo", f"hydra.run.dir={tmp_path / 'run'}", f"+hparams={broken}"])
    )
    assert "is not valid YAML" in line and str(broken) in line
    assert not (tmp_path / "run").exists()


def test_the_launcher_stops_before_creating_anything(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    line = one_error_line(
        run_launch(["hpo=default", "dry_run=true", "hpo.max_jobs=0", f"hydra.run.dir={run_dir}"])
    )
    assert line.startswith("error: hpo.max_jobs=0: must be ≥ 1")
    assert not run_dir.exists()


def test_an_error_from_deeper_down_is_one_sentence_unless_the_trace_is_asked_for(monkeypatch, capsys) -> None:
    import errno

    from dogbreed.errors import exit_on_user_error

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    for error, code, said in [
        (
            RuntimeError("boom\n  in a kernel"),
            1,
            "error: RuntimeError: boom in a kernel (HYDRA_FULL_ERROR=1 shows the trace)",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/x/y"),
            2,
            "error: cannot write /x/y: the disk is full",
        ),
    ]:
        with pytest.raises(SystemExit) as stopped, exit_on_user_error():
            raise error
        assert stopped.value.code == code
        assert capsys.readouterr().err.startswith(said)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(RuntimeError, match="boom"), exit_on_user_error():
        raise RuntimeError("boom")


def test_printing_the_config_checks_its_values_first(tmp_path: Path) -> None:
    """`--cfg job` (Hydra's print-config) with a bad value is one line naming it and exit 2, as a run would
    be: a printed config is no preview of a run that would be refused. A good one prints as Hydra does,
    and the launcher's needs no command (nor the command's own checks)."""
    from dogbreed.train import check_command_line as check_training_line
    from launch.cli import check_command_line as check_launch_line

    with pytest.raises(ConfigError, match=r"^model\.lr=-1: must be > 0"):
        check_training_line(["--cfg", "job", "model.lr=-1"])
    check_training_line(["--cfg", "job", "model.lr=0.01", f"hydra.run.dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=r"^hpo\.max_jobs=0: must be ≥ 1"):
        check_launch_line(["--cfg", "job", "hpo=default", "hpo.max_jobs=0"])
    check_launch_line(["--cfg", "job"])
    printed = run_train(["--cfg", "job", "data.batch_size=0", f"hydra.run.dir={tmp_path / 'run'}"])
    assert one_error_line(printed).startswith("error: data.batch_size=0: must be ≥ 1")
    assert not (tmp_path / "run").exists()


def test_debug_rule_arguments_are_ranged_where_the_rule_can_pass_and_fire() -> None:
    assert training_error(["debug.rules.unchanged_tensor.num_steps=0"]).startswith(
        "debug.rules.unchanged_tensor.num_steps=0: must be ≥ 1 (a window of training steps"
    )
    assert training_error(["debug.rules.dataloader_bottleneck.threshold=1"]).startswith(
        "debug.rules.dataloader_bottleneck.threshold=1: must be < 1"
    )
    assert training_error(["debug.rules.weight_update_ratio.small_threshold=20"]) == (
        "debug.rules.weight_update_ratio.small_threshold=20: must be below large_threshold (10), "
        "or every ratio is outside the range"
    )
    assert training_error(["++debug.rules.overfit.patence=2"]).startswith(
        "debug.rules.overfit.patence=2: is not a setting here"
    )
    assert training_error(["debug.stop_on=[overfit]", "~debug.rules.overfit"]).startswith(
        "debug.stop_on names ['overfit'], not rules of debug.rules"
    )


LAUNCH_KEYS = [key for key, _ in leaves(Launch)]


@cache
def launch_values(serverless: bool) -> dict[str, Any]:
    """The launcher's composed values (composed once: Hydra takes a while), autoscaling on."""
    from omegaconf import OmegaConf

    key = "deploy.serverless.max_concurrency=5" if serverless else "deploy.autoscaling.max=2"
    return OmegaConf.to_container(launch_cfg([key]), resolve=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(LAUNCH_KEYS), value=ANY_VALUE)
def test_any_value_at_any_launcher_key_passes_or_is_one_line_naming_it(key: str, value: Any) -> None:
    values = copy.deepcopy(launch_values(key.startswith("deploy.serverless.")))
    try:
        validate(Launch, set_key(values, key, value))
    except ConfigError as exc:
        # a pair's rule (small_threshold below large_threshold) names the pair's other key, and this one
        parent, _, leaf = key.rpartition(".")
        said = str(exc)
        named = said.startswith(key) or (bool(parent) and said.startswith(parent) and leaf in said)
        assert "\n" not in str(exc) and named, str(exc)
