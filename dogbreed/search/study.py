"""Hyperparameter search on one machine: the `conf/launch/hpo/*.yaml` space with Optuna.

TPE sampler (seeded), `max_jobs` trials, `max_parallel_jobs` at a time, median pruning (the local
counterpart of SageMaker's early stopping). Each trial prints the documented metric lines into its own log
and the objective is parsed from that log exactly as a tuning job parses it. With a frozen backbone the
trials train only the head (`dogbreed.search.head`) on features cached once (`dogbreed.data.features`)
and served from memory (`dogbreed.search.features`).
Needs the `search` extra (Optuna, matplotlib).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.progress import Progress

from dogbreed.data.features import FeatureCache
from dogbreed.errors import DogBreedError
from dogbreed.hparams import SearchSpace, TrialResult, apply_hparams, write_results
from dogbreed.search.features import CachedFeatures
from dogbreed.search.head import fit_head
from dogbreed.training.metric_lines import parse_metrics
from dogbreed.training.run import prepare, quiet_third_party, recalibrate, run

log = logging.getLogger(__name__)


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
        if not trainer.sanity_checking:
            report_or_prune(self.trial, trainer.current_epoch, float(trainer.callback_metrics[self.key]))


def report_or_prune(trial: optuna.Trial, epoch: int, value: float) -> None:
    trial.report(value, epoch)
    if trial.should_prune():
        raise optuna.TrialPruned(f"pruned after epoch {epoch}")


def search_model(train_cfg: DictConfig, class_names: list[str]) -> Any:
    """The model whose frozen backbone computes the search's features, built seeded: a random backbone
    (`pretrained=false`) is the same in every search and in bench/search.py's uncached twin."""
    pl.seed_everything(train_cfg.seed, verbose=False)
    return instantiate(train_cfg.model, class_names=class_names, _convert_="all")


def cached_splits(train_cfg: DictConfig) -> tuple[dict[str, CachedFeatures], int]:
    """Train and valid backbone features of the training data (computed once), and the class count."""
    datamodule = instantiate(train_cfg.data, _convert_="all")
    prepare(datamodule, train_cfg.model)
    datamodule.setup()
    model = search_model(train_cfg, datamodule.class_names)
    recalibrate(model, datamodule)
    sets = FeatureCache.of(datamodule).build(model, datamodule, ("train", "valid"))
    return {split: CachedFeatures(data) for split, data in sets.items()}, len(datamodule.class_names)


def run_search(
    train_cfg: DictConfig,
    hpo: DictConfig,
    space: SearchSpace,
    out_dir: str | Path,
    enqueue: list[dict] | None = None,
) -> optuna.Study:
    """Search `space` for the best `hpo.objective` with `hpo`'s budget; writes results into `out_dir`."""
    quiet_third_party()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)  # per-trial chatter
    out_dir = Path(out_dir)
    (out_dir / "trials").mkdir(parents=True, exist_ok=True)
    metric = hpo.objective.metric
    cached = bool(train_cfg.data.cache_features and train_cfg.model.freeze_backbone)
    if cached:
        features, classes = cached_splits(train_cfg)
    else:
        log.info("trials train on images (feature cache off or backbone not frozen)")
    distributions = space.optuna()

    def objective(trial: optuna.Trial) -> float:
        params = {name: suggest(trial, name, dist) for name, dist in distributions.items()}
        cfg = apply_hparams(train_cfg, params)
        lines = io.StringIO()
        try:
            if cached:
                report = lambda epoch, value: report_or_prune(trial, epoch, value)  # noqa: E731
                fit_head(
                    cfg, features["train"], features["valid"], classes, lines, cfg.seed + trial.number, report
                )
            else:
                cfg.paths.run_dir = str(out_dir / "trials" / f"trial_{trial.number:03d}")
                run(cfg, extra_callbacks=[Pruning(trial, metric)], lines=lines)
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
    write_results(trial_results(study), space, metric, hpo.objective.direction, out_dir, "the local search")
    plot(study, hpo, space, out_dir)
    return study


def _has_complete(study: optuna.Study) -> bool:
    return any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def trial_results(study: optuna.Study) -> list[TrialResult]:
    """Optuna's trials as `trials.csv` rows (a pruned trial's objective: its last reported value)."""
    rows = []
    for t in study.trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        value = t.value if t.value is not None else (list(t.intermediate_values.values()) or [None])[-1]
        rows.append(
            TrialResult(
                str(t.number), t.state.name, value, dict(t.params), len(t.intermediate_values), seconds
            )
        )
    return rows


def plot(study: optuna.Study, hpo: DictConfig, space: SearchSpace, out_dir: Path) -> None:
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

    fig, axes = plt.subplots(1, len(space.params), figsize=(4 * len(space.params), 3.5), squeeze=False)
    for ax, param in zip(axes[0], space.params, strict=True):
        xs = [t.params[param.name] for t in complete]
        if param.type == "categorical":
            choices = list(param.values)
            xs = [choices.index(x) for x in xs]
            ax.set_xticks(range(len(choices)), [str(c) for c in choices])
        elif param.scale == "log":
            ax.set_xscale("log")
        ax.scatter(xs, [t.value for t in complete])
        ax.set(xlabel=param.name, ylabel=metric)
    fig.suptitle(f"{metric} against each parameter")
    fig.tight_layout()
    fig.savefig(out_dir / "objective_vs_params.png", dpi=100)
    plt.close(fig)
