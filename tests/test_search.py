"""Local search: one space, two translations; the Optuna search; the feature cache; the hand-off."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch.utils.data import TensorDataset

from dogbreed import DogBreedDataModule
from dogbreed.data.features import cached_features
from dogbreed.errors import DogBreedError
from dogbreed.hparams import SearchSpace
from dogbreed.search.features import Batch, CachedFeatures
from dogbreed.search.head import fit_head, new_head
from dogbreed.search.study import cached_splits, run_search
from dogbreed.training.callbacks import StartupTimer
from dogbreed.training.config import CONF_DIR
from dogbreed.training.metric_lines import parse_metrics
from dogbreed.training.run import build_trainer, run, setup
from tests.conftest import FAST_OVERRIDES, HANG_GUARD_S, TRIALS_COLUMNS, compose_train, run_launch, run_repo

SPACE = OmegaConf.load(CONF_DIR / "launch" / "hpo" / "default.yaml")
SEARCH_SPACE = SearchSpace.from_config(SPACE.params, "conf/launch/hpo/default.yaml")
LOG = "Logarithmic"


def test_sagemaker_translation_of_the_default_space() -> None:
    # as the SDK writes each range into CreateHyperParameterTuningJob's ParameterRanges
    ranges = SEARCH_SPACE.sdk_ranges()
    assert {name: (p.__name__, p.as_tuning_range(name)) for name, p in ranges.items()} == {
        "lr": ("Continuous", {"Name": "lr", "MinValue": "0.0001", "MaxValue": "0.01", "ScalingType": LOG}),
        "eps": ("Continuous", {"Name": "eps", "MinValue": "1e-09", "MaxValue": "1e-07", "ScalingType": LOG}),
        "weight_decay": (
            "Continuous",
            {"Name": "weight_decay", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": LOG},
        ),
        "batch_size": ("Categorical", {"Name": "batch_size", "Values": ["32", "64"]}),
    }
    assert (SPACE.objective.metric, SPACE.objective.direction) == ("val_acc", "maximize")
    assert (SPACE.max_jobs, SPACE.max_parallel_jobs, SPACE.early_stopping) == (20, 2, "Auto")


def test_optuna_translation_of_the_default_space() -> None:
    dists = SEARCH_SPACE.optuna()
    model = OmegaConf.load(CONF_DIR / "model" / "resnet18.yaml")
    for name in ("lr", "eps", "weight_decay"):
        assert dists[name] == optuna.distributions.FloatDistribution(
            model[name] / 10, model[name] * 10, log=True
        ), name  # 0.1× to 10× of the model default
    assert dists["batch_size"] == optuna.distributions.CategoricalDistribution([32, 64])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"momentum": {"type": "continuous", "min": 0.1, "max": 0.9}},
            "params.momentum: not a hyperparameter",
        ),
        ({"lr": {"type": "uniform", "min": 0.1, "max": 0.9}}, "params.lr: type must be one of"),
        (
            {"lr": {"type": "continuous", "min": 0.1, "max": 0.9, "values": [1]}},
            "params.lr: ['values'] do not",
        ),
        ({"lr": {"type": "continuous", "min": 0.0, "max": 0.9, "scale": "log"}}, "log scale needs min > 0"),
        ({"batch_size": {"type": "categorical"}}, "params.batch_size: a categorical parameter needs"),
    ],
)
def test_a_bad_search_space_is_an_error_naming_the_file_and_key(params: dict, message: str) -> None:
    with pytest.raises(DogBreedError, match=r"conf/launch/hpo/x\.yaml") as err:
        SearchSpace.from_config(params, "conf/launch/hpo/x.yaml")
    assert message in str(err.value)


def tiny_train_cfg(tiny_root: Path, run_dir: Path, *extra: str):
    return compose_train(
        [
            "+experiment=demo",
            f"data.root={tiny_root}",
            f"paths.run_dir={run_dir}",
            *FAST_OVERRIDES,
            f"data.cache_dir={run_dir / 'cache'}",
            *extra,
        ]
    )


def test_three_trial_search_from_the_command_line(tiny_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "search"
    result = run_launch(
        [
            "hpo=default",
            "instance=local",
            "experiment=demo",
            "hpo.max_jobs=3",
            f"hydra.run.dir={run_dir}",
            f"data.root={tiny_root}",  # a training key among the launcher's: no `--` needed
            *FAST_OVERRIDES,
            "trainer.max_epochs=2",
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best trial" in result.stdout and "+hparams=" in result.stdout
    rows = list(csv.DictReader((run_dir / "trials.csv").open()))
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    assert list(rows[0]) == TRIALS_COLUMNS  # as a SageMaker tuning job's results are written
    best = OmegaConf.load(run_dir / "best_hparams.yaml")
    assert set(best) == {"lr", "eps", "weight_decay", "batch_size"}
    assert isinstance(best.batch_size, int) and isinstance(best.lr, float)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    top = max(float(r["val_acc"]) for r in complete)
    assert best.lr in [float(r["lr"]) for r in complete if float(r["val_acc"]) == top]
    for plot in ("objective_per_trial.png", "objective_vs_params.png"):
        assert (run_dir / plot).read_bytes().startswith(b"\x89PNG"), plot
    assert len(list((run_dir / "trials").glob("trial_*.log"))) == 3


@pytest.mark.filterwarnings("ignore:Fixed parameter lr with value 1e-09 is out of range")
def test_pruning_stops_a_clearly_bad_trial_early(tiny_root: Path, tmp_path: Path) -> None:
    cfg = tiny_train_cfg(tiny_root, tmp_path, "data.cache_features=true", "trainer.max_epochs=6")
    hpo = OmegaConf.merge(SPACE, {"max_jobs": 2, "max_parallel_jobs": 1})
    good = {"lr": 0.01, "eps": 1e-8, "weight_decay": 0.01, "batch_size": 32}
    bad = {**good, "lr": 1e-9}  # nothing moves: stuck at chance
    # Two good trials would race each other (different seeds, either can fall below the other's median);
    # one good trial against one stuck at chance cannot.
    study = run_search(cfg, hpo, SEARCH_SPACE, tmp_path, enqueue=[good, bad])
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    assert len(study.trials[1].intermediate_values) < 6


def test_cached_head_training_matches_uncached_training(tiny_root: Path, tmp_path: Path) -> None:
    losses = {}
    for cache in ("false", "true"):
        run_dir = tmp_path / cache
        run(
            tiny_train_cfg(
                tiny_root,
                run_dir,
                "data.augment=false",
                f"data.cache_features={cache}",
                "trainer.max_epochs=3",
            )
        )
        rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
        losses[cache] = [float(r[k]) for r in rows for k in ("train/loss", "val/loss") if r.get(k)]
    assert len(losses["true"]) == 6
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-4, abs=1e-5)


class RecordedOrder(TensorDataset):
    """Cached features that note which rows a DataLoader asks for, in order: Lightning's batch order."""

    def __init__(self, dataset: TensorDataset) -> None:
        super().__init__(*dataset.tensors)
        self.rows: list[int] = []

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        self.rows.append(int(index))
        return super().__getitem__(index)

    def epochs(self) -> list[torch.Tensor]:
        return list(torch.tensor(self.rows).split(len(self)))


class ReplayedOrder(CachedFeatures):
    """Training features served in the epochs' orders given, instead of the order `fit_head` draws."""

    def __init__(self, dataset: TensorDataset, orders: list[torch.Tensor]) -> None:
        super().__init__(dataset)
        self.orders = iter(orders)

    def batches(self, order: torch.Tensor | None, batch_size: int) -> Iterator[Batch]:
        return super().batches(next(self.orders), batch_size)


@pytest.mark.filterwarnings("ignore:Experiment logs directory")  # the run dir holds the feature cache
def test_search_head_trains_as_the_model_does_on_cached_features(tiny_root: Path, tmp_path: Path) -> None:
    """A search trial (`fit_head`) and `DogBreedClassifier` through Lightning with `data.cache_features=true`,
    given the same head, features, batch order and optimizer settings, report the same losses."""
    cfg = tiny_train_cfg(
        tiny_root,
        tmp_path,
        "data.cache_features=true",
        "trainer.max_epochs=2",
        "data.batch_size=5",  # 48 training images: 10 steps an epoch, the last one of 3
        "model.scheduler=cosine",  # the step count matters
        "model.label_smoothing=0.1",  # the training loss is the model's, not plain cross-entropy
        "model.weight_decay=0.05",
    )
    pl.seed_everything(cfg.seed, workers=True)  # as `run` starts
    model, datamodule = setup(cfg, StartupTimer(tmp_path))  # training on cached features
    features, classes = cached_splits(cfg)  # the search's own features, for the same config
    for split in ("train", "valid"):
        assert torch.equal(features[split].features, datamodule.feature_sets[split].tensors[0]), split
    seed = cfg.seed + 7  # a trial's seed draws its head first
    model.net.fc.load_state_dict(
        new_head(features["train"].dim, classes, torch.Generator().manual_seed(seed)).state_dict()
    )
    datamodule.feature_sets["train"] = recorded = RecordedOrder(datamodule.feature_sets["train"])
    lightning = io.StringIO()
    trainer, _ = build_trainer(cfg, None, lines=lightning)
    trainer.fit(model, datamodule=datamodule)

    search = io.StringIO()
    train = ReplayedOrder(datamodule.feature_sets["train"], recorded.epochs())
    head = fit_head(cfg, train, features["valid"], classes, search, seed)

    # The same operations on the same tensors in the same order: the same bits.
    assert torch.equal(head.weight, model.net.fc.weight) and torch.equal(head.bias, model.net.fc.bias)
    got, expected = parse_metrics(search.getvalue()), parse_metrics(lightning.getvalue())
    assert len(expected["val_loss"]) == 2
    # The losses as both print them (what the search parses): 6 decimals, ±5e-7 each, and a validation
    # mean summed in another order (Lightning: batches of 5; fit_head: all rows at once), ~1e-7 at these
    # losses (3.09, 1.91). An lr 1 % higher, or one step fewer, moves the second epoch's loss by 4.5e-3.
    assert got["val_loss"] == pytest.approx(expected["val_loss"], abs=2e-6)
    assert got["val_acc"] == expected["val_acc"]


def test_cache_is_reused_and_invalidated(tiny_root: Path, tmp_path: Path, caplog) -> None:
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    dm = DogBreedDataModule(str(root), num_workers=0, image_size=64, url=None)
    dm.setup()
    dataset = dm.dataset("valid", augment=False)
    files = [p for p, _ in dm.samples["valid"]]
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

    def run(weights: str = "w1"):
        with caplog.at_level(logging.INFO, logger="dogbreed.data.features"):
            caplog.clear()
            features = cached_features(
                net, weights, dataset, files, repr(dataset.transform), tmp_path / "c", "valid"
            )
        return "cache hit" in caplog.text, features

    assert run()[0] is False, "the first call computes"
    hit, first = run()
    assert hit and first.tensors[0].shape == (len(files), 3)
    assert run("w2")[0] is False, "other weights: recomputed"
    files[0].write_bytes(files[0].read_bytes() + b"\0")  # same image, new size and mtime
    assert run()[0] is False, "a changed file: recomputed"
    assert run()[0] is True
    for cache_file in (tmp_path / "c").glob("*.pt"):  # a cut-short file never loads
        cache_file.write_bytes(cache_file.read_bytes()[:100])
    assert run()[0] is False
    assert not list((tmp_path / "c").glob(".*")), "no temporary files left"


def test_best_hparams_flow_into_training(tiny_root: Path, tmp_path: Path) -> None:
    hparams = tmp_path / "best_hparams.yaml"
    hparams.write_text("lr: 0.0042\neps: 3.0e-08\nweight_decay: 0.02\nbatch_size: 4\n")
    run_dir = tmp_path / "run"
    result = run_repo(
        [
            "-m",
            "dogbreed.train",
            "+experiment=demo",
            f"data.root={tiny_root}",
            f"hydra.run.dir={run_dir}",
            *FAST_OVERRIDES,
            f"+hparams={hparams}",
        ],
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = OmegaConf.load(run_dir / "model" / "config.json")
    assert config.hyperparameters.lr == 0.0042 and config.hyperparameters.weight_decay == 0.02
    assert OmegaConf.load(run_dir / "config.yaml").data.batch_size == 4
    hparams.write_text("momentum: 0.9\n")
    bad = run_repo(
        [
            "-m",
            "dogbreed.train",
            "+experiment=demo",
            f"data.root={tiny_root}",
            f"hydra.run.dir={tmp_path / 'bad'}",
            *FAST_OVERRIDES,
            f"+hparams={hparams}",
        ],
        timeout=HANG_GUARD_S,
    )
    assert bad.returncode == 2 and "unknown hyperparameter(s) ['momentum']" in bad.stderr + bad.stdout
