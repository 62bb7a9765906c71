"""Training entry point: `python -m dogbreed.train [+experiment=local|demo] [key=value ...]`.

Fits, tests the best checkpoint (by `val/acc`), and writes into the run dir: `checkpoints/`,
`config.yaml`, `metrics.csv`, `tensorboard/` and the `model/` artifact. Prints the metric lines of
`dogbreed.metric_lines` for tuning jobs. Inside a SageMaker job it also takes `--name value`
hyperparameters and `SM_*` variables (see `dogbreed.sagemaker_env`).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dogbreed.artifact import write_artifact
from dogbreed.callbacks import MetricLines, RankSummary
from dogbreed.checkpoints import (
    AtomicCheckpointIO,
    ResumingCSVLogger,
    SaveOnSigterm,
    find_resume_checkpoint,
)
from dogbreed.config import CONF_DIR, TRAIN_CONFIG
from dogbreed.data import DogBreedDataModule
from dogbreed.debug import debug_callbacks, make_profiler, output_dir, smdebug_hook
from dogbreed.errors import (
    DataUnavailableError,
    DogBreedError,
    WeightsUnavailableError,
    exit_on_user_error,
)
from dogbreed.model import DogBreedClassifier, imagenet_state_dict
from dogbreed.package import add_inference_code
from dogbreed.processes import die_with_parent
from dogbreed.report import write_report
from dogbreed.rundir import completed, mark_complete, set_aside
from dogbreed.sagemaker_env import HYPERPARAMETERS, hydra_argv

log = logging.getLogger("dogbreed.train")


WAYS_FORWARD = """Ways forward:
  - data.root=/path/to/dogImages      a local copy (train/ valid/ test/ with one folder per breed)
  - model.weights_path=/path/to.pth   a local ImageNet ResNet18 state_dict (or model.pretrained=false)
  - +experiment=demo                  generated data and no downloads: runs anywhere"""


def quiet_third_party() -> None:
    """Drop third-party chatter that says nothing about this run."""
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")  # frozen backbone
    warnings.filterwarnings("ignore", message=r".*multiple `ModelCheckpoint` callbacks")  # first = best
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )


def prepare(datamodule: DogBreedDataModule, model_cfg: DictConfig) -> None:
    """Make data and weights available, reporting everything that is missing in one message."""
    if int(os.environ.get("LOCAL_RANK", 0)) > 0:
        return  # DDP: local rank 0 prepared everything before the other processes started
    problems = []
    try:
        datamodule.prepare_data()
    except DataUnavailableError as exc:
        problems.append(str(exc))
    if model_cfg.pretrained and not model_cfg.weights_path:
        try:
            imagenet_state_dict()
        except WeightsUnavailableError as exc:
            problems.append(str(exc))
    if problems:
        raise DogBreedError(
            "cannot start training:\n" + "\n".join(f"  - {p}" for p in problems) + "\n" + WAYS_FORWARD
        )


def apply_hparams(cfg: DictConfig, values: dict[str, Any]) -> DictConfig:
    """A copy of `cfg` with hyperparameters (names as tuning jobs use them) set at their Hydra keys."""
    unknown = sorted(set(values) - set(HYPERPARAMETERS))
    if unknown:
        known = ", ".join(sorted(HYPERPARAMETERS))
        raise DogBreedError(f"unknown hyperparameter(s) {unknown}; known: {known}")
    cfg = cfg.copy()
    with open_dict(cfg):
        for name, value in values.items():
            OmegaConf.update(cfg, HYPERPARAMETERS[name].lstrip("+"), value)
    return cfg


def with_hparams(cfg: DictConfig, path: str | Path) -> DictConfig:
    """Apply a `best_hparams.yaml` written by a search (`+hparams=PATH` on the command line)."""
    path = Path(path)
    if not path.is_file():
        raise DogBreedError(f"hparams file {path} does not exist")
    values = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(values, dict):
        raise DogBreedError(f"{path} must map hyperparameter names to values, e.g. `lr: 0.001`")
    log.info("hyperparameters from %s: %s", path, values)
    return apply_hparams(cfg, values)


def hydra_log_file(run_dir: Path) -> Path | None:
    """The job log Hydra writes for this run (None outside a Hydra app, or for another run dir)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    runtime = HydraConfig.get()
    path = Path(runtime.runtime.output_dir) / f"{runtime.job.name}.log"
    return path if path.parent.resolve() == run_dir.resolve() else None


def train(
    cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = (), lines: TextIO | None = None
) -> dict[str, Any]:
    """Fit, test the best checkpoint, write the artifact. Returns the final metrics.

    `extra_callbacks` join the trainer's (e.g. a tuner's pruning); `lines` receives the metric lines.
    """
    quiet_third_party()
    if cfg.get("hparams"):
        cfg = with_hparams(cfg, cfg.hparams)
    run_dir = Path(cfg.paths.run_dir)
    starting_over = str(cfg.get("resume")).lower() == "false"
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:  # DDP workers start after this, into the same dir
        done = completed(run_dir)
        if done is not None and not starting_over and done["epochs"] >= cfg.trainer.max_epochs:
            print(
                f"run {run_dir} is already complete ({done['epochs']} epochs, test_acc={done['test_acc']:.4f},"
                f" model in {cfg.paths.model_dir}); nothing to do. resume=false trains it again from the "
                "start; a larger trainer.max_epochs continues it.",
                flush=True,
            )
            return {**done, "complete": True}
        if starting_over:
            set_aside(run_dir, Path(cfg.paths.checkpoints), hydra_log_file(run_dir))
    pl.seed_everything(cfg.seed, workers=True)
    datamodule: DogBreedDataModule = instantiate(cfg.data, _convert_="all")
    prepare(datamodule, cfg.model)
    datamodule.setup("fit")
    model: DogBreedClassifier = instantiate(cfg.model, class_names=datamodule.class_names, _convert_="all")
    if cfg.data.get("cache_features"):
        if not cfg.model.freeze_backbone:
            raise DogBreedError(
                "data.cache_features=true needs model.freeze_backbone=true (features must not change)"
            )
        datamodule.use_feature_cache(model)

    checkpoint = ModelCheckpoint(
        dirpath=cfg.paths.checkpoints,
        filename="epoch{epoch:03d}-val_acc{val/acc:.4f}",
        auto_insert_metric_name=False,
        monitor=cfg.checkpoint.monitor,
        mode=cfg.checkpoint.mode,
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,  # one last.ckpt, shared with the every-N-steps saver below
    )
    # last.ckpt every N steps too, so a killed or preempted job loses at most N steps
    every_n_steps = ModelCheckpoint(
        dirpath=cfg.paths.checkpoints,
        save_top_k=0,
        save_last=True,
        every_n_train_steps=cfg.checkpoint.every_n_steps,
        enable_version_counter=False,  # the same last.ckpt as the epoch-end one, not last-v1.ckpt
    )
    found = find_resume_checkpoint(cfg.paths.checkpoints) if str(cfg.get("resume")) == "auto" else None
    resume, resume_step = found or (None, None)
    if resume:  # Lightning warns about the folder we are resuming from
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    loggers = [
        ResumingCSVLogger(run_dir, resume_step),
        TensorBoardLogger(run_dir, name="tensorboard", version="", default_hp_metric=False),
    ]
    callbacks = [
        checkpoint,
        every_n_steps,
        SaveOnSigterm(cfg.paths.checkpoints),
        RankSummary(),
        MetricLines(lines),
    ]
    callbacks, profiler = [*callbacks, *extra_callbacks], None
    debug = cfg.get("debug") or {}
    if debug.get("enabled"):
        callbacks += debug_callbacks(debug, run_dir / "debug")
        profiler = make_profiler(debug.profiler, run_dir / "debug" / "profiler")
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, profiler=profiler, plugins=[AtomicCheckpointIO()]
    )
    smdebug_hook(model)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
    except SIGTERMException:
        log.warning(
            "stopped by SIGTERM before the end; the same command resumes from %s", cfg.paths.checkpoints
        )
        return {"stopped": True}
    tested = trainer.test(model, datamodule=datamodule, ckpt_path="best", verbose=False)[0]
    metrics = {
        "best_val_acc": float(checkpoint.best_model_score),
        "test_loss": tested["test/loss"],
        "test_acc": tested["test/acc"],
        "epochs": trainer.current_epoch,
    }
    if trainer.is_global_zero:
        hparams = {k: v for k, v in model.hparams.items() if k != "class_names"}
        write_artifact(
            model.net, model.class_names, cfg.paths.model_dir, cfg.data.image_size, metrics, hparams
        )
        if "SM_MODEL_DIR" in os.environ:  # the job's model.tar.gz then deploys as it is
            add_inference_code(cfg.paths.model_dir)
        log.info("best checkpoint: %s", checkpoint.best_model_path)
        if debug.get("enabled"):
            print(f"report: {write_report(run_dir, output_dir(run_dir))}", flush=True)
        print(f"model artifact: {cfg.paths.model_dir}", flush=True)
        mark_complete(run_dir, metrics)  # last: a run killed before this point resumes
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=TRAIN_CONFIG)
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except DogBreedError as exc:
        log.error("%s", exc)
        sys.exit(2)


def cli() -> None:
    """Translate SageMaker-style arguments and `SM_*` variables, then run the Hydra app."""
    if "LOCAL_RANK" in os.environ:  # a DDP worker (Lightning's or torchrun's): never outlive the launcher
        die_with_parent()
    with exit_on_user_error():
        sys.argv = [sys.argv[0], *hydra_argv(sys.argv[1:], os.environ)]
    main()


if __name__ == "__main__":
    cli()
