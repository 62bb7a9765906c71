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


Threshold = Annotated[float, Field(ge=0)] | bool


class Debug(Section):
    enabled: bool
    stop_on: list[str] = Field(default_factory=list)
    system_interval_s: float = Field(0.5, gt=0)
    profiler: Profiler | None = None
    # each rule's arguments are typed by its class (dogbreed.debug.RULES); here: non-negative or a flag
    rules: dict[str, dict[str, Threshold]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _stop_on_configured_rules(self) -> Debug:
        unknown = sorted(set(self.stop_on) - set(self.rules))
        if unknown:
            raise ValueError(f"stop_on names {unknown}, not rules of debug.rules: {', '.join(self.rules)}")
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
