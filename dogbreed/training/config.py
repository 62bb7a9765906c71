"""The training app's Hydra config: where it lives, its top-level keys, and composing it from any code.

`conf/train.yaml` and its groups (`model/`, `data/`, `trainer/`, `experiment/`, `debug/`) are the training
app; `conf/launch/` is the SageMaker launcher's own tree. Tests, the local search and the launcher compose
the training config through `compose_training`, also from inside another running Hydra app.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dogbreed.container import CONF_DIR

TRAIN_CONFIG = "train"


def config_keys(path: Path) -> set[str]:
    """Top-level keys of a primary config: its own keys and the groups its defaults list selects."""
    cfg = OmegaConf.load(path)
    keys = {str(k) for k in cfg if k != "defaults"}
    for entry in cfg.get("defaults", []):
        if OmegaConf.is_dict(entry):  # `- model: resnet18`, `- optional hpo: null`; not `- _self_`
            keys |= {str(k).removeprefix("optional ").split("@")[0] for k in entry}
    return keys | {"hydra"}


def training_keys() -> set[str]:
    """What `key=value` overrides of the training app may start with (`experiment` is a group too)."""
    return config_keys(CONF_DIR / f"{TRAIN_CONFIG}.yaml") | {"experiment", "hparams"}


@contextmanager
def _own_hydra_context() -> Iterator[None]:
    """Hydra's global state pointed at `conf/` for the block, then restored (the launcher has its own)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    global_hydra = GlobalHydra.instance()
    outer = global_hydra.hydra if global_hydra.is_initialized() else None
    global_hydra.clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            yield
    finally:
        if outer is not None:
            GlobalHydra.instance().initialize(outer)


def compose_training(overrides: Sequence[str] = (), with_hydra: bool = False) -> DictConfig:
    """`conf/train.yaml` with `overrides`, as `python -m dogbreed.train` composes it (no run dir made);
    `with_hydra`: Hydra's own node too (`hydra.run.dir`)."""
    from hydra import compose

    with _own_hydra_context():
        return compose(config_name=TRAIN_CONFIG, overrides=list(overrides), return_hydra_config=with_hydra)
