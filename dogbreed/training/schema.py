"""The training config's schema: what each key of `conf/train.yaml` and its groups may be, and why.

Defaults live in `conf/`; types and ranges here, checked by `check_training` wherever a training config
enters: `python -m dogbreed.train` before Hydra makes the run dir (command line, `+hparams=` files and
SageMaker's `--name value` alike), `training.run.run` for every caller, and the launcher for its training
overrides. Lightning's other Trainer arguments pass through (`+trainer.limit_train_batches=…`): Lightning
checks those itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from omegaconf import DictConfig, OmegaConf
from pydantic import ConfigDict, Field, model_validator

from dogbreed.schema import Section, Text, validate

if TYPE_CHECKING:
    from dogbreed.hparams import SearchSpace

# ResNet18 halves the image in 5 stride-2 stages (224 → 7). At 32 px its last stage sees 1 × 1; below that
# the stages convolve padding, and the model is meaningless. The tests' 64 px is well above.
MIN_IMAGE_SIZE = 32

Target = Annotated[str, Field(alias="_target_")]
Unit = Annotated[float, Field(ge=0, lt=1)]


class Model(Section):
    target_: Target
    pretrained: bool
    weights_path: Text | None
    freeze_backbone: bool
    lr: float = Field(gt=0, description="AdamW's step size; 0 would never move a weight")
    eps: float = Field(gt=0, description="AdamW's denominator term; 0 can divide by zero")
    weight_decay: float = Field(ge=0, description="AdamW's decoupled decay")
    betas: list[Unit] = Field(
        min_length=2, max_length=2, description="AdamW's two averaging factors in [0, 1)"
    )
    label_smoothing: Unit = Field(description="share of the target spread over the other classes, in [0, 1)")
    scheduler: Literal["cosine"] | None
    channels_last: bool
    bn_recalibration: bool
    calibrate: bool
    abstain_precision: float | None = Field(
        gt=0, le=1, description="the top-1 precision the confidence threshold keeps, in (0, 1]"
    )


class Synthetic(Section):
    classes: int = Field(ge=2, description="a classifier needs two classes")
    train_per_class: int = Field(ge=1)
    valid_per_class: int = Field(ge=1)
    test_per_class: int = Field(ge=1)
    seed: int


class Data(Section):
    target_: Target
    root: Text
    url: str | None
    expected_classes: int | None = Field(ge=1)
    batch_size: int = Field(ge=1, description="images per step")
    num_workers: int = Field(ge=0, description="dataloader processes; 0 loads in the training process")
    image_size: int = Field(
        ge=MIN_IMAGE_SIZE,
        le=4096,
        description="ResNet18's 5 stride-2 stages take 224 px to 7; under 32 px its last stage sees padding",
    )
    strict: bool
    pin_memory: bool
    augment: bool
    cache_features: bool
    cache_dir: Text
    cache_views: int = Field(ge=0, description="augmented views per training image; 0: one evaluation view")
    synthetic: Synthetic | None = None


# Lightning 2.6's precision names (lightning_fabric.connector._PRECISION_INPUT), without importing Lightning
Precision = Literal[
    "transformer-engine",
    "transformer-engine-float16",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "32-true",
    "64-true",
    64,
    32,
    16,
]


class Trainer(Section):
    model_config = ConfigDict(extra="allow")  # Lightning's other arguments: Lightning checks them

    target_: Target
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"]
    devices: Annotated[int, Field(ge=1)] | Literal["auto", -1] = Field(description="-1 or auto: all")
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    max_epochs: int = Field(ge=1, description="a run that trains no epoch has no best checkpoint to test")
    precision: Precision
    log_every_n_steps: int = Field(ge=1)
    num_sanity_val_steps: int = Field(ge=-1, description="-1: the whole validation set")
    enable_progress_bar: bool
    enable_model_summary: bool
    deterministic: bool | Literal["warn"]


class Profiler(Section):
    wait: int = Field(ge=0)
    warmup: int = Field(ge=0)
    active: int = Field(ge=1, description="steps recorded")


Steps = Annotated[int, Field(ge=1, description="a window of training steps: 0 would never close")]
Patience = Annotated[int, Field(ge=1, description="failed checks in a row before it is an issue")]
Share = Annotated[float, Field(ge=0, lt=1, description="a share, in [0, 1): at 1 it can never be exceeded")]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


# The training rules' arguments (`conf/debug/on.yaml`, the classes of `dogbreed.debug.RULES`), each
# in the range where the rule can both pass and fire
class VanishingGradient(Section):
    threshold: Positive


class ExplodingTensor(Section):
    only_nan: bool
    threshold: Positive


class LossNotDecreasing(Section):
    num_steps: Steps
    diff_percent: float = Field(ge=0, lt=100, description="the loss must fall by this %, in [0, 100)")
    patience: Patience


class Overfit(Section):
    ratio_threshold: NonNegative
    patience: Patience
    start_epoch: int = Field(ge=0)


class Overtraining(Section):
    patience_validation: Patience
    delta: NonNegative


class PoorWeightInitialization(Section):
    min_std: Positive


class UnchangedTensor(Section):
    num_steps: Steps
    rtol: NonNegative
    atol: NonNegative


class WeightUpdateRatio(Section):
    num_steps: Steps
    large_threshold: Positive
    small_threshold: NonNegative
    epsilon: float = Field(gt=0, description="added to |weight| before dividing by it")

    @model_validator(mode="after")
    def _small_below_large(self) -> WeightUpdateRatio:
        if self.small_threshold >= self.large_threshold:
            raise ValueError(
                f"small_threshold={self.small_threshold:g}: must be below large_threshold "
                f"({self.large_threshold:g}), or every ratio is outside the range"
            )
        return self


class ClassImbalance(Section):
    threshold_imbalance: float = Field(ge=1, description="largest / smallest class count: at least 1")
    threshold_misprediction: Share
    min_class_samples: int = Field(ge=1)


class StalledTraining(Section):
    threshold: Positive  # seconds without a training step


class AccuracyAtChance(Section):
    after_epochs: int = Field(ge=0)
    min_ratio: Positive  # × chance (1 / classes)


class DataloaderBottleneck(Section):
    threshold: Share
    warmup_steps: int = Field(ge=0)


class LowCpuUtilization(Section):
    threshold_percent: float = Field(gt=0, le=100, description="mean CPU % of all cores, in (0, 100]")
    warmup_s: NonNegative


class Rules(Section):
    """The rules that run: a rule left out does not."""

    vanishing_gradient: VanishingGradient | None = None
    exploding_tensor: ExplodingTensor | None = None
    loss_not_decreasing: LossNotDecreasing | None = None
    overfit: Overfit | None = None
    overtraining: Overtraining | None = None
    poor_weight_initialization: PoorWeightInitialization | None = None
    unchanged_tensor: UnchangedTensor | None = None
    weight_update_ratio: WeightUpdateRatio | None = None
    class_imbalance: ClassImbalance | None = None
    stalled_training: StalledTraining | None = None
    accuracy_at_chance: AccuracyAtChance | None = None
    dataloader_bottleneck: DataloaderBottleneck | None = None
    low_cpu_utilization: LowCpuUtilization | None = None

    def configured(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class Debug(Section):
    enabled: bool
    stop_on: list[str] = Field(default_factory=list)
    system_interval_s: float = Field(0.5, gt=0)
    profiler: Profiler | None = None
    rules: Rules = Field(default_factory=Rules)

    @model_validator(mode="after")
    def _stop_on_configured_rules(self) -> Debug:
        unknown = sorted(set(self.stop_on) - set(self.rules.configured()))
        if unknown:
            raise ValueError(
                f"stop_on names {unknown}, not rules of debug.rules: {', '.join(self.rules.configured())}"
            )
        return self


class Paths(Section):
    run_dir: Text
    model_dir: Text
    checkpoints: Text


class Checkpoint(Section):
    monitor: Literal["val/acc", "val/loss", "train/acc", "train/loss"]
    mode: Literal["max", "min"]
    every_n_steps: int = Field(ge=1, description="last.ckpt every N training steps")


class Training(Section):
    seed: int = Field(ge=0, le=2**32 - 1, description="numpy's seed range")
    paths: Paths
    checkpoint: Checkpoint
    resume: Literal["auto", False]
    model: Model
    data: Data
    trainer: Trainer
    debug: Debug
    hparams: Text | None = None

    @model_validator(mode="after")
    def _features_need_a_frozen_backbone(self) -> Training:
        if self.data.cache_features and not self.model.freeze_backbone:
            raise ValueError(
                "data.cache_features=true: needs model.freeze_backbone=true (cached features must not change)"
            )
        return self


def plain(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain values, interpolations resolved but in `paths`: those name Hydra's run dir,
    which does not exist yet when a command line is checked. Hydra's own node is Hydra's to check."""
    values = OmegaConf.to_container(cfg, resolve=False)
    values.pop("hydra", None)
    for key in values:
        if key != "paths":
            node = cfg[key]
            values[key] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    return values


def check_search_bounds(cfg: DictConfig, space: SearchSpace, source: str) -> None:
    """Every bound and choice of a search space is a value the training config accepts: no trial starts
    with a value the schema refuses (`lr: {min: 0}` is refused with the file and the parameter)."""
    from dogbreed.hparams import apply_hparams
    from dogbreed.schema import ConfigError

    for param in space.params:
        for value in param.values if param.type == "categorical" else (param.min, param.max):
            try:
                validate(Training, plain(apply_hparams(cfg, {param.name: value})))
            except ConfigError as exc:
                raise ConfigError(f"{source}: params.{param.name}: {exc}") from None


def check_training(cfg: DictConfig) -> DictConfig:
    """`cfg` with its `+hparams=` file applied, checked against the schema; a ConfigError names what is
    wrong (`data.batch_size=0: must be ≥ 1 (images per step)`), and the file when a value came from it."""
    from dogbreed.hparams import with_hparams
    from dogbreed.schema import ConfigError

    validate(Training, plain(cfg))
    if not cfg.get("hparams"):
        return cfg
    with_file = with_hparams(cfg, cfg.hparams)
    try:
        validate(Training, plain(with_file))
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from +hparams={cfg.hparams})") from None
    return with_file
