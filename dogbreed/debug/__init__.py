"""`debug=on`: training rules, the PyTorch profiler, system metrics, and what the report reads.

Writes into `<run dir>/debug/`: `rules.json` (one verdict per rule: ok, issue or not judged), `steps.csv`
(data wait vs compute per step), `system.csv` (CPU %, RSS over time) and `profiler/` (Chrome trace +
operator table). The rules of `debug.stop_on` stop training when they find an issue.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.profilers import PyTorchProfiler

from dogbreed.container import base_dir, output_data_dir
from dogbreed.debug.progress import AccuracyAtChance, ClassImbalance, LossNotDecreasing, Overfit, Overtraining
from dogbreed.debug.rules import (
    ISSUE,
    NOT_JUDGED,
    ExplodingTensor,
    PoorWeightInitialization,
    Rule,
    UnchangedTensor,
    VanishingGradient,
    WeightUpdateRatio,
)
from dogbreed.debug.system import DataloaderBottleneck, StalledTraining, SystemMonitor
from dogbreed.errors import DogBreedError

log = logging.getLogger(__name__)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


RULES: dict[str, type[Rule]] = {
    cls.name: cls
    for cls in (
        VanishingGradient,
        ExplodingTensor,
        LossNotDecreasing,
        Overfit,
        Overtraining,
        PoorWeightInitialization,
        UnchangedTensor,
        WeightUpdateRatio,
        ClassImbalance,
        StalledTraining,
        AccuracyAtChance,
        DataloaderBottleneck,
        SystemMonitor,
    )
}


def headline(verdicts: list[dict[str, Any]]) -> str:
    """`2 issues, 1 rule not judged, 10 ok`: what the report and the log open with."""
    issues = sum(v["status"] == ISSUE for v in verdicts)
    unjudged = sum(v["status"] == NOT_JUDGED for v in verdicts)
    parts = [f"{issues} issue{'s' * (issues != 1)}" if issues else "no issues"]
    if unjudged:
        parts.append(f"{unjudged} rule{'s' * (unjudged != 1)} not judged")
    parts.append(f"{len(verdicts) - issues - unjudged} ok")
    return ", ".join(parts)


def describe(verdict: dict[str, Any]) -> str:
    """One verdict as a line: `issue at step 12: … (hint: …)`, `ok: …`, `not judged: …`."""
    if verdict["status"] == ISSUE:
        return f"issue at step {verdict['step']}: {verdict['evidence']} (hint: {verdict['hint']})"
    if verdict["status"] == NOT_JUDGED:
        return f"not judged: {verdict['reason']}"
    return f"ok: {verdict['evidence']}"


def keep_earlier(out_dir: Path, resumed_at: int) -> Path:
    """A resumed run keeps what the process before it judged (e.g. the rule that stopped it):
    `rules.json` → `rules.until-step-45.json` (returned), and the same for the measurements."""
    for name in ("rules.json", "steps.csv", "system.csv"):
        path = out_dir / name
        if path.is_file():
            path.replace(path.with_name(f"{path.stem}.until-step-{resumed_at}{path.suffix}"))
    return out_dir / f"rules.until-step-{resumed_at}.json"


class DebugRecorder(pl.Callback):
    """Writes the rules' verdicts and the measurements once training ends (also when a rule stopped it)."""

    def __init__(self, rules: list[Rule], out_dir: Path) -> None:
        self.rules, self.out_dir, self.first_step = rules, out_dir, 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.first_step = trainer.global_step  # > 0: resumed from a checkpoint

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.first_step:
            earlier = keep_earlier(self.out_dir, self.first_step)
            log.info(
                "rules judged steps %d-%d (resumed); the steps before: %s",
                self.first_step,
                trainer.global_step,
                earlier,
            )
        verdicts = [rule.verdict() for rule in self.rules]
        (self.out_dir / "rules.json").write_text(json.dumps(verdicts, indent=2))
        for rule in self.rules:
            if isinstance(rule, DataloaderBottleneck):
                write_csv(self.out_dir / "steps.csv", rule.steps)
            if isinstance(rule, SystemMonitor):
                write_csv(self.out_dir / "system.csv", rule.samples)
        log.info("rules: %s", headline(verdicts))
        for v in verdicts:
            (log.warning if v["status"] == ISSUE else log.info)("rule %-27s %s", v["rule"], describe(v))


def debug_callbacks(cfg: DictConfig, out_dir: Path) -> list[pl.Callback]:
    """One callback per configured rule, plus the recorder; rule runs must be on the trainer before it.
    The rules named in `cfg.stop_on` stop training when they find an issue (the schema checked that they
    are configured rules)."""
    stop_on = set(cfg.get("stop_on") or [])
    rules: list[Rule] = []
    for name, thresholds in cfg.rules.items():
        if name not in RULES:
            raise DogBreedError(f"debug.rules.{name} is not a rule; known: {', '.join(RULES)}")
        kwargs = dict(thresholds)
        if name == SystemMonitor.name:
            kwargs["interval_s"] = cfg.system_interval_s
        rule = RULES[name](**kwargs)
        rule.stop = name in stop_on
        rules.append(rule)
    return [*rules, DebugRecorder(rules, out_dir)]


def stopping_rules(trainer: pl.Trainer) -> list[str]:
    """The `debug.stop_on` rules that stopped this training (empty when none did)."""
    return [c.name for c in trainer.callbacks if isinstance(c, Rule) and c.stop_requested]


def make_profiler(cfg: DictConfig, out_dir: Path) -> PyTorchProfiler:
    """Lightning's PyTorchProfiler over a bounded window of training steps: Chrome trace + operator table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Kineto writes "USDT … profiler_start/stop" at every cycle and, with a CUDA build on a machine without
    # a GPU, "ERROR … gpuGetDeviceCount failed": noise in a training log. Read when profiling first starts;
    # set KINETO_LOG_LEVEL yourself to see them.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    return PyTorchProfiler(
        dirpath=out_dir,
        filename="profile",
        export_to_chrome=True,
        schedule=torch.profiler.schedule(wait=cfg.wait, warmup=cfg.warmup, active=cfg.active, repeat=1),
        sort_by_key="cpu_time_total",
        row_limit=30,
    )


def smdebug_hook(model: torch.nn.Module, config: Path | None = None) -> Any:
    """Inside a SageMaker job whose request enabled Debugger: register smdebug's hook on the model.

    smdebug is optional and no longer installable next to numpy ≥ 2.3; without it this is one log line.
    Frozen parameters are left out of gradient collections (smdebug fails on parameters without grads).
    """
    config = config or Path(base_dir(os.environ)) / "input" / "config" / "debughookconfig.json"
    if not config.is_file():
        return None
    try:
        import smdebug.pytorch as smd
    except Exception as exc:  # ImportError, or smdebug failing against this numpy
        log.info(
            "SageMaker Debugger config found but smdebug is unavailable (%s): using dogbreed's rules", exc
        )
        return None
    hook = smd.Hook.create_from_json_file(str(config))
    # smdebug names a gradient after the registered module: gradient/DogBreedClassifier_net.fc.weight
    prefix = f"gradient/{model._get_name()}_"
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    gradients = hook.get_collection("gradients")
    gradients.include_regex = [re.escape(prefix + name) + "$" for name in trainable]
    hook.register_module(model)
    if hasattr(model, "criterion"):
        hook.register_loss(model.criterion)
    frozen = sum(1 for p in model.parameters() if not p.requires_grad)
    log.info("smdebug hook registered from %s (%d frozen parameters left out of gradients)", config, frozen)
    return hook


def output_dir(run_dir: Path) -> Path:
    """Inside a SageMaker job the report belongs in SM_OUTPUT_DATA_DIR, which the job uploads."""
    return output_data_dir(os.environ, run_dir)
