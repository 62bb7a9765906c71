"""The SageMaker container contract: hyperparameters and SM_* variables → Hydra overrides."""

from __future__ import annotations

import pytest

from dogbreed.container import argv_overrides, env_overrides, hydra_argv
from dogbreed.errors import DogBreedError
from dogbreed.hparams import HYPERPARAMETERS, hydra_value


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"64"', "64"),
        ("64", "64"),
        ('"0.001"', "0.001"),
        ("1e-3", "0.001"),
        ('"local"', "local"),
        ("demo", "demo"),
        ("true", "true"),
        ('"false"', "false"),
        ("null", "null"),
        ('"\\"32\\""', "32"),
    ],
)
def test_json_quoted_values_are_unwrapped(raw: str, expected: str) -> None:
    assert hydra_value(raw) == expected


def test_every_spelling_maps_through_the_table() -> None:
    argv = ["--lr", "0.01", "--batch-size", '"64"', "--weight_decay=0.1", "--eps", "1e-07"]
    assert argv_overrides(argv) == [
        "model.lr=0.01",
        "data.batch_size=64",
        "model.weight_decay=0.1",
        "model.eps=1e-07",
    ]


def test_hydra_arguments_and_reserved_names_pass_through() -> None:
    argv = [
        "+experiment=local",
        "--cfg",
        "job",
        "--sagemaker_program",
        "train.py",
        "--_tuning_objective_metric",
        "val_acc",
        "trainer.max_epochs=1",
    ]
    assert argv_overrides(argv) == ["+experiment=local", "--cfg", "job", "trainer.max_epochs=1"]


def test_unknown_names_are_errors_listing_the_table() -> None:
    with pytest.raises(DogBreedError, match=r"unknown hyperparameter\(s\) \['momentum'\]; known: ") as err:
        argv_overrides(["--momentum", "0.9"])
    assert all(name in str(err.value) for name in HYPERPARAMETERS)
    with pytest.raises(DogBreedError, match="has no value"):
        argv_overrides(["--lr"])


def test_sm_variables_and_precedence() -> None:
    env = {
        "SM_CHANNEL_TRAINING": "/opt/ml/input/data/training",
        "SM_MODEL_DIR": "/opt/ml/model",
        "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
        "SM_NUM_GPUS": "4",
    }
    assert env_overrides(env) == [
        "data.root=/opt/ml/input/data/training",
        "paths.model_dir=/opt/ml/model",
        "paths.checkpoints=/opt/ml/checkpoints",
        "hydra.run.dir=/opt/ml/output/data",
        "trainer=gpu",
        "trainer.devices=4",
    ]
    assert env_overrides({}) == []
    argv = hydra_argv(["data.root=/mine", "--experiment", "local"], env)
    assert "data.root=/mine" in argv and "data.root=/opt/ml/input/data/training" not in argv
    assert argv[-1] == "+experiment=local"
