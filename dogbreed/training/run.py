"""One training run as small library functions: the entry point, the search and tests call `run`.

    result = run(cfg)          # cfg: `conf/train.yaml` composed (see `dogbreed.training.config`)
    result.status              # "complete", "already complete", "stopped" (SIGTERM: resumable) or
                               # "stopped by rule" (debug.stop_on; resumable, metrics["stopped_by"])
    result.metrics             # best_val_acc, test_loss, test_acc, epochs

`run` = `start` (the run dir: complete already? start over?) → `setup` (data, weights, model, feature
cache) → `build_trainer` → `fit_and_test` → `publish` (the `model/` artifact, `code/` inside a SageMaker
job, the debug report, `complete.json`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.profilers import PassThroughProfiler
from pytorch_lightning.utilities.exceptions import SIGTERMException
from rich.progress import track
from torch.utils.data import DataLoader

from dogbreed.container import in_training_job
from dogbreed.data.datamodule import DogBreedDataModule
from dogbreed.data.features import FeatureCache
from dogbreed.debug import debug_callbacks, make_profiler, output_dir, smdebug_hook, stopping_rules
from dogbreed.errors import DataUnavailableError, DogBreedError, WeightsUnavailableError
from dogbreed.model import DogBreedClassifier, imagenet_state_dict
from dogbreed.training.callbacks import MetricLines, RankSummary, StartupTimer
from dogbreed.training.checkpoints import (
    AtomicCheckpointIO,
    ResumingCSVLogger,
    SaveOnSigterm,
    checkpoint_callbacks,
    find_resume_checkpoint,
)
from dogbreed.training.rundir import completed, hydra_log_file, mark_complete, set_aside
from dogbreed.training.schema import check_training

log = logging.getLogger("dogbreed.train")

WAYS_FORWARD = """Ways forward:
  - data.root=/path/to/dogImages      a local copy (train/ valid/ test/ with one folder per breed)
  - model.weights_path=/path/to.pth   a local ImageNet ResNet18 state_dict (or model.pretrained=false)
  - +experiment=demo                  generated data and no downloads: runs anywhere"""


@dataclass
class RunResult:
    """How a run ended and its final metrics (empty when it stopped early)."""

    status: str
    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        return self.status == "stopped"


def quiet_third_party() -> None:
    """Drop third-party chatter that says nothing about this run."""
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")  # frozen backbone
    warnings.filterwarnings("ignore", message=r".*multiple `ModelCheckpoint` callbacks")  # first = best
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    # debug=on's profiler records one bounded window per stage (repeat=1): nothing across cycles to keep
    warnings.filterwarnings("ignore", message=r"Warning: Profiler clears events at the end of each cycle")
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )


def is_first_local_process() -> bool:
    """False in the DDP workers a run starts after its own preparations."""
    return int(os.environ.get("LOCAL_RANK", 0)) == 0


def prepare(datamodule: DogBreedDataModule, model_cfg: DictConfig) -> None:
    """Make data and weights available, reporting everything that is missing in one message."""
    if not is_first_local_process():
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


def start(cfg: DictConfig) -> RunResult | None:
    """A result when the run dir holds this run finished already; else None, after setting aside an
    earlier run's files when `resume=false` starts over."""
    run_dir = Path(cfg.paths.run_dir)
    if not is_first_local_process():  # DDP workers start after this, into the same dir
        return None
    starting_over = str(cfg.get("resume")).lower() == "false"
    done = completed(run_dir)
    if done is not None and not starting_over and done["epochs"] >= cfg.trainer.max_epochs:
        print(
            f"run {run_dir} is already complete ({done['epochs']} epochs, "
            f"test_acc={done['test_acc']:.4f}, model in {cfg.paths.model_dir}); nothing to do. "
            "resume=false trains it again from the start; a larger trainer.max_epochs continues it.",
            flush=True,
        )
        return RunResult("already complete", run_dir, done)
    if starting_over:
        set_aside(run_dir, Path(cfg.paths.checkpoints), hydra_log_file(run_dir))
    return None


def setup(cfg: DictConfig, startup: StartupTimer) -> tuple[DogBreedClassifier, DogBreedDataModule]:
    """Data prepared and scanned, the model built; backbone features cached when the data config says so."""
    datamodule: DogBreedDataModule = instantiate(cfg.data, _convert_="all")
    with startup.phase("data: prepare and scan"):
        prepare(datamodule, cfg.model)
        datamodule.setup("fit")
    with startup.phase("model"):
        model: DogBreedClassifier = instantiate(
            cfg.model, class_names=datamodule.class_names, _convert_="all"
        )
    with startup.phase("BatchNorm statistics (AdaBN)"):
        recalibrate(model, datamodule)
    with startup.phase("feature cache"):
        if cfg.data.get("cache_features"):  # the schema made sure the backbone is frozen
            datamodule.use_features(
                FeatureCache.of(datamodule).build(model, datamodule, ("train", "valid", "test"))
            )
    return model, datamodule


BN_IMAGES = 128  # BatchNorm statistics settle within a few batches; all 6,680 dogImages would take minutes


def recalibrate(model: DogBreedClassifier, datamodule: DogBreedDataModule) -> None:
    """`model.bn_recalibration`: AdaBN over up to `BN_IMAGES` training images spread over the classes,
    before the head trains or features are cached (the cache key includes the new statistics)."""
    if not model.hparams.bn_recalibration:
        return
    dataset = datamodule.dataset("train", augment=False)
    dataset.samples = dataset.samples[:: max(1, len(dataset.samples) // BN_IMAGES)][:BN_IMAGES]
    # In this process (workers would cost more than they save); its own generator, because iterating a
    # DataLoader draws a seed from the global RNG, which would change the head's start and the batch order.
    loader = DataLoader(dataset, batch_size=32, generator=torch.Generator().manual_seed(0))
    batches = track(
        (x for x, _ in loader), total=len(loader), description="BatchNorm statistics", transient=True
    )
    seen = model.recalibrate_batchnorm(batches)
    log.info("BatchNorm statistics of the frozen backbone re-estimated on %d training images (AdaBN)", seen)


def build_trainer(
    cfg: DictConfig,
    resume_step: int | None,
    extra_callbacks: Sequence[pl.Callback] = (),
    lines: TextIO | None = None,
) -> tuple[pl.Trainer, ModelCheckpoint]:
    """The Trainer of `cfg.trainer` with our checkpoints, loggers, metric lines and (debug=on) rules and
    profiler; returns it with its best-checkpoint callback."""
    run_dir = Path(cfg.paths.run_dir)
    best, every_n_steps = checkpoint_callbacks(cfg)
    loggers = [
        ResumingCSVLogger(run_dir, resume_step),
        TensorBoardLogger(run_dir, name="tensorboard", version="", default_hp_metric=False),
    ]
    callbacks = [
        best,
        every_n_steps,
        SaveOnSigterm(cfg.paths.checkpoints),
        RankSummary(),
        MetricLines(lines),
        *extra_callbacks,
    ]
    profiler = None
    debug = cfg.get("debug") or {}
    if debug.get("enabled"):
        callbacks += debug_callbacks(debug, run_dir / "debug")
        profiler = make_profiler(debug.profiler, run_dir / "debug" / "profiler")
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, profiler=profiler, plugins=[AtomicCheckpointIO()]
    )
    return trainer, best


def fit_and_test(
    cfg: DictConfig,
    trainer: pl.Trainer,
    best: ModelCheckpoint,
    model: DogBreedClassifier,
    datamodule: DogBreedDataModule,
    resume: Path | None,
) -> RunResult:
    """Fit (from `resume` when given), then test the best checkpoint."""
    run_dir = Path(cfg.paths.run_dir)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
    except SIGTERMException:
        log.warning(
            "stopped by SIGTERM before the end; the same command resumes from %s", cfg.paths.checkpoints
        )
        return RunResult("stopped", run_dir)
    stopped_by = stopping_rules(trainer)
    if stopped_by:  # a debug.stop_on rule found an issue: keep where it stopped, test nothing
        last = Path(cfg.paths.checkpoints) / "last.ckpt"
        # not profiled: a torch profiler restarted after fit never records and fails at exit
        profiler, trainer.profiler = trainer.profiler, PassThroughProfiler()
        try:
            trainer.save_checkpoint(last, weights_only=False)  # the whole state: resumable
        finally:
            trainer.profiler = profiler
        log.error(
            "stopped at step %d by debug rule(s) %s (debug.stop_on); the report says why; "
            "after changing what they point at, the same command resumes from %s",
            trainer.global_step,
            ", ".join(stopped_by),
            last,
        )
        return RunResult("stopped by rule", run_dir, {"stopped_by": stopped_by, "step": trainer.global_step})
    tested = trainer.test(model, datamodule=datamodule, ckpt_path="best", verbose=False)[0]
    metrics = {
        "best_val_acc": float(best.best_model_score),
        "test_loss": tested["test/loss"],
        "test_acc": tested["test/acc"],
        "epochs": trainer.current_epoch,
    }
    return RunResult("complete", run_dir, metrics)


def publish(
    cfg: DictConfig,
    model: DogBreedClassifier,
    datamodule: DogBreedDataModule,
    best: ModelCheckpoint,
    result: RunResult,
) -> None:
    """On the first process: the `model/` artifact (calibrated; with `code/` inside a SageMaker job, so its
    model.tar.gz deploys as it is), the test split's evaluation, the debug report, then `complete.json`."""
    from dogbreed.serving.artifact import write_artifact
    from dogbreed.serving.package import add_inference_code

    hparams = {k: v for k, v in model.hparams.items() if k != "class_names"}
    data = {
        "root": str(cfg.data.root),
        "generated": bool(cfg.data.get("synthetic")),
        "images": {split: len(samples) for split, samples in datamodule.samples.items()},
    }
    write_artifact(
        model.net, model.class_names, cfg.paths.model_dir, cfg.data.image_size, result.metrics, hparams, data
    )
    evaluate(cfg, model, datamodule, result)
    if in_training_job(os.environ):
        add_inference_code(cfg.paths.model_dir)
    log.info("best checkpoint: %s", best.best_model_path)
    report(cfg, result)
    print(f"model artifact: {cfg.paths.model_dir}", flush=True)
    mark_complete(result.run_dir, result.metrics)  # last: a run killed before this point resumes


def evaluate(
    cfg: DictConfig, model: DogBreedClassifier, datamodule: DogBreedDataModule, result: RunResult
) -> None:
    """Calibrate the artifact on the validation split, then evaluate the test split into `evaluation/`."""
    from dogbreed.evaluation.evaluate import after_training
    from dogbreed.evaluation.report import headline

    outcome = after_training(
        Path(cfg.paths.model_dir),
        result.run_dir,
        datamodule.samples,
        model.hparams.calibrate,
        model.hparams.abstain_precision,
        cfg.data.num_workers,
        cfg.data.get("synthetic"),
    )
    print(
        f"evaluation: {result.run_dir / 'evaluation' / 'report.html'}: {headline(outcome.metrics)}",
        flush=True,
    )


def report(cfg: DictConfig, result: RunResult) -> None:
    """`debug=on`: report.html/md (inside a SageMaker job into SM_OUTPUT_DATA_DIR, which it uploads)."""
    from dogbreed.debug.report import write_report

    if (cfg.get("debug") or {}).get("enabled"):
        print(f"report: {write_report(result.run_dir, output_dir(result.run_dir))}", flush=True)


def run(
    cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = (), lines: TextIO | None = None
) -> RunResult:
    """Fit, test the best checkpoint, publish. `extra_callbacks` join the trainer's (e.g. a tuner's
    pruning); `lines` receives the metric lines (default: stdout)."""
    quiet_third_party()
    cfg = check_training(cfg)  # with its +hparams= file applied
    finished = start(cfg)
    if finished is not None:
        return finished
    pl.seed_everything(cfg.seed, workers=True)
    startup = StartupTimer(Path(cfg.paths.run_dir))
    model, datamodule = setup(cfg, startup)
    with startup.phase("checkpoints"):
        found = find_resume_checkpoint(cfg.paths.checkpoints) if str(cfg.get("resume")) == "auto" else None
    resume, resume_step = found or (None, None)
    if resume:  # Lightning warns about the folder we are resuming from
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    with startup.phase("trainer"):
        trainer, best = build_trainer(cfg, resume_step, [startup, *extra_callbacks], lines)
    smdebug_hook(model)
    run_dir = Path(cfg.paths.run_dir)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    result = fit_and_test(cfg, trainer, best, model, datamodule, resume)
    if result.status == "complete" and trainer.is_global_zero:
        publish(cfg, model, datamodule, best, result)
    elif result.status == "stopped by rule" and trainer.is_global_zero:
        report(cfg, result)
    return result
