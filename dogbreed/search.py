"""Hyperparameter search on one machine: the `conf/hpo/*.yaml` space with Optuna.

TPE sampler (seeded), `max_jobs` trials, `max_parallel_jobs` at a time, median pruning (the local
counterpart of SageMaker's early stopping). Each trial prints the documented metric lines into its own log
and the objective is parsed from that log exactly as a tuning job parses it. With a frozen backbone the
trials train only the head, in a plain loop, on cached backbone features (`dogbreed.features`).
Needs the `search` extra (Optuna, matplotlib).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import optuna
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.progress import Progress

from dogbreed.data import DogBreedDataModule
from dogbreed.errors import DogBreedError
from dogbreed.features import CachedFeatures, FeatureSource
from dogbreed.fileio import atomic_write_text
from dogbreed.metric_lines import epoch_line, parse_metrics
from dogbreed.train import apply_hparams, prepare, quiet_third_party, train

log = logging.getLogger(__name__)


def optuna_distributions(params: Mapping[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
    """The search space as Optuna distributions (log scale and categorical choices kept)."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, spec in params.items():
        kind = spec["type"]
        if kind == "continuous":
            out[name] = optuna.distributions.FloatDistribution(
                spec["min"], spec["max"], log=spec["scale"] == "log"
            )
        elif kind == "integer":
            log_scale = spec.get("scale") == "log"
            out[name] = optuna.distributions.IntDistribution(spec["min"], spec["max"], log=log_scale)
        elif kind == "categorical":
            out[name] = optuna.distributions.CategoricalDistribution(list(spec["values"]))
        else:
            raise DogBreedError(f"search parameter {name}: type must be continuous, integer or categorical")
    return out


def suggest(trial: optuna.Trial, name: str, dist: optuna.distributions.BaseDistribution) -> Any:
    if isinstance(dist, optuna.distributions.FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_categorical(name, dist.choices)


class Pruning(pl.Callback):
    """Reports the objective after each validation epoch and stops a trial the pruner gives up on."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.key = trial, metric.replace("_", "/", 1)  # val_acc → val/acc

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.trial.report(float(trainer.callback_metrics[self.key]), trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {trainer.current_epoch}")


def fit_head(
    cfg: DictConfig,
    train: FeatureSource,
    valid: FeatureSource,
    num_classes: int,
    lines: TextIO,
    seed: int,
    trial: optuna.Trial | None = None,
) -> None:
    """One trial: a fresh linear head trained with the trial's AdamW arguments on backbone features.

    A plain PyTorch loop: with the backbone out of the picture a step is a 512×C matrix product, and a
    framework's per-step bookkeeping would cost more than the step itself. The features come from the
    cache or, for comparison, from the backbone batch by batch (`ComputedFeatures`): same numbers.
    """
    generator = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(train.dim, num_classes)
    with torch.no_grad():  # initialised from the trial's own generator: threads do not share RNG state
        bound = 1 / train.dim**0.5
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    m = cfg.model
    optimizer = torch.optim.AdamW(
        head.parameters(), lr=m.lr, eps=m.eps, weight_decay=m.weight_decay, betas=tuple(m.betas)
    )
    batch_size, epochs = cfg.data.batch_size, cfg.trainer.max_epochs
    steps = epochs * math.ceil(len(train) / batch_size)
    cosine = m.scheduler == "cosine"
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if cosine else None
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=m.label_smoothing)
    for epoch in range(epochs):
        for features, targets in train.batches(torch.randperm(len(train), generator=generator), batch_size):
            loss = criterion(head(features), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        loss_sum, correct = 0.0, 0
        with torch.no_grad():
            for features, targets in valid.batches(None, 256):
                logits = head(features)
                loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
                correct += int((logits.argmax(1) == targets).sum())
        print(epoch_line(epoch, loss_sum / len(valid), correct / len(valid)), file=lines, flush=True)
        if trial is not None:
            trial.report(correct / len(valid), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")


def search_backbone(cfg: DictConfig, datamodule: DogBreedDataModule) -> torch.nn.Module:
    """The model whose frozen backbone computes the search's features (seeded: pretrained=false repeats)."""
    pl.seed_everything(cfg.seed, verbose=False)
    return instantiate(cfg.model, class_names=datamodule.class_names, _convert_="all")


def run_search(
    train_cfg: DictConfig, hpo: DictConfig, out_dir: str | Path, enqueue: list[dict] | None = None
) -> optuna.Study:
    """Search `hpo.params` for the best `hpo.objective`; writes results into `out_dir`."""
    quiet_third_party()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)  # per-trial chatter
    out_dir = Path(out_dir)
    (out_dir / "trials").mkdir(parents=True, exist_ok=True)
    metric = hpo.objective.metric
    cached = bool(train_cfg.data.cache_features and train_cfg.model.freeze_backbone)
    datamodule = None
    if cached:
        datamodule = instantiate(train_cfg.data, _convert_="all")
        prepare(datamodule, train_cfg.model)
        datamodule.setup()
        datamodule.use_feature_cache(search_backbone(train_cfg, datamodule), splits=("train", "valid"))
    else:
        log.info("trials train on images (feature cache off or backbone not frozen)")
    distributions = optuna_distributions(hpo.params)

    def objective(trial: optuna.Trial) -> float:
        params = {name: suggest(trial, name, dist) for name, dist in distributions.items()}
        cfg = apply_hparams(train_cfg, params)
        lines = io.StringIO()
        try:
            if cached:
                train_set, valid_set = (
                    CachedFeatures(datamodule.feature_sets[s]) for s in ("train", "valid")
                )
                classes = len(datamodule.class_names)
                fit_head(cfg, train_set, valid_set, classes, lines, cfg.seed + trial.number, trial)
            else:
                cfg.paths.run_dir = str(out_dir / "trials" / f"trial_{trial.number:03d}")
                train(cfg, extra_callbacks=[Pruning(trial, metric)], lines=lines)
        finally:
            (out_dir / "trials" / f"trial_{trial.number:03d}.log").write_text(lines.getvalue())
        values = parse_metrics(lines.getvalue())[metric]
        if not values:
            raise DogBreedError(f"trial {trial.number} printed no {metric} line")
        return values[-1]  # the last value, as SageMaker takes a job's final objective

    study = optuna.create_study(
        direction=hpo.objective.direction,
        sampler=optuna.samplers.TPESampler(seed=hpo.seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=min(5, max(1, hpo.max_jobs // 4)), n_warmup_steps=1
        ),
    )
    for params in enqueue or []:
        study.enqueue_trial(params, skip_if_exists=False)
    with Progress() as progress:
        task = progress.add_task("search", total=hpo.max_jobs)

        def show(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            done = [t for t in study.trials if t.state.is_finished()]
            best = (
                f"best {metric}={study.best_value:.4f}" if _has_complete(study) else "no complete trial yet"
            )
            progress.update(task, completed=len(done), description=f"trial {len(done)}/{hpo.max_jobs} {best}")

        study.optimize(objective, n_trials=hpo.max_jobs, n_jobs=hpo.max_parallel_jobs, callbacks=[show])
    write_results(study, hpo, out_dir)
    return study


def _has_complete(study: optuna.Study) -> bool:
    return any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def write_results(study: optuna.Study, hpo: DictConfig, out_dir: Path) -> None:
    """`best_hparams.yaml`, `trials.csv` and the plots."""
    names = list(hpo.params)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["trial", "state", hpo.objective.metric, *names, "epochs", "seconds"])
    for t in study.trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
        value = t.value if t.value is not None else (list(t.intermediate_values.values()) or [""])[-1]
        writer.writerow(
            [
                t.number,
                t.state.name,
                value,
                *(t.params.get(n) for n in names),
                len(t.intermediate_values),
                f"{seconds:.2f}" if seconds != "" else "",
            ]
        )
    atomic_write_text(out_dir / "trials.csv", buf.getvalue())
    if not _has_complete(study):
        raise DogBreedError(f"no trial completed; see {out_dir / 'trials'}")
    best = study.best_trial
    header = (
        f"# best of {len(study.trials)} trials: trial {best.number}, {hpo.objective.metric}={best.value:.6f}"
    )
    atomic_write_text(
        out_dir / "best_hparams.yaml", header + "\n" + OmegaConf.to_yaml(OmegaConf.create(dict(best.params)))
    )
    plot(study, hpo, out_dir)


def plot(study: optuna.Study, hpo: DictConfig, out_dir: Path) -> None:
    """Objective per trial (with the best so far) and objective against each parameter, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = hpo.objective.metric
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values]
    pick = max if hpo.objective.direction == "maximize" else min
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter([t.number for t in complete], [t.value for t in complete], label="complete")
    ax.scatter(
        [t.number for t in pruned],
        [list(t.intermediate_values.values())[-1] for t in pruned],
        marker="x",
        color="grey",
        label="pruned (last value)",
    )
    ordered = sorted(complete, key=lambda t: t.number)
    best_so_far = [pick(u.value for u in ordered[: i + 1]) for i in range(len(ordered))]
    ax.step([t.number for t in ordered], best_so_far, where="post", color="C1", label="best so far")
    ax.set(xlabel="trial", ylabel=metric, title=f"{metric} per trial")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "objective_per_trial.png", dpi=100)
    plt.close(fig)

    names = list(hpo.params)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        spec = hpo.params[name]
        xs = [t.params[name] for t in complete]
        if spec.type == "categorical":
            choices = list(spec["values"])
            xs = [choices.index(x) for x in xs]
            ax.set_xticks(range(len(choices)), [str(c) for c in choices])
        elif spec.get("scale") == "log":
            ax.set_xscale("log")
        ax.scatter(xs, [t.value for t in complete])
        ax.set(xlabel=name, ylabel=metric)
    fig.suptitle(f"{metric} against each parameter")
    fig.tight_layout()
    fig.savefig(out_dir / "objective_vs_params.png", dpi=100)
    plt.close(fig)
