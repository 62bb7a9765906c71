"""What a model serves besides its weights: one temperature and a confidence threshold, from validation.

Temperature scaling (Guo et al., 2017) divides the logits by one scalar fitted to minimise the validation
NLL: accuracy is unchanged (the order of the classes is), the probabilities become believable. The
threshold is the lowest calibrated top-1 probability at which validation top-1 precision still reaches the
target, so an answer below it is flagged `"confident": false`. Both go into `model/config.json`, which
`dogbreed.serving.service.Service` reads, so every runtime and shell serves them.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from dogbreed.atomic import atomic_write_text
from dogbreed.evaluation.metrics import risk_coverage
from dogbreed.serving.artifact import CONFIG
from dogbreed.serving.service import softmax

log = logging.getLogger(__name__)

NEVER = math.nextafter(1.0, 2.0)  # a threshold no probability reaches: nothing is confident


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """Logits up to a per-row constant (all softmax needs), from probabilities floored at float32's tiny."""
    return np.log(np.clip(probs, np.finfo(np.float32).tiny, None))


def rescale(probs: np.ndarray, factor: float) -> np.ndarray:
    """softmax(log p × factor): probabilities at another temperature. With the served temperature as
    `factor` it turns calibrated probabilities back into the raw softmax."""
    return softmax(log_probabilities(probs) * factor)


def logit_nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean NLL of softmax(logits) from the logits themselves (log-sum-exp): exact however confident."""
    top = logits.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float((log_total - logits[np.arange(len(labels)), labels]).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, steps: int = 80) -> float:
    """The temperature T minimising NLL of softmax(logits / T). The NLL is convex in 1/T, so a golden-section
    search over log(1/T) in [1/100, 100] finds its minimum. It takes logits, not served probabilities: a
    confident model's float32 probabilities underflow, and flooring them caps the loss of its confidently
    wrong answers: T came out a few percent low (tests/test_evaluate.py measures it)."""
    logits = np.asarray(logits, np.float64)
    loss = lambda log_beta: logit_nll(logits * math.exp(log_beta), labels)  # noqa: E731
    low, high = math.log(0.01), math.log(100.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(steps):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return 1.0 / math.exp((low + high) / 2)


def confidence_threshold(probs: np.ndarray, labels: np.ndarray, precision: float) -> float:
    """The lowest top-1 probability at which the answers at or above it are still ≥ `precision` right:
    the most answers kept confident at that precision (`NEVER` when even the most confident fall short)."""
    _, accuracy, thresholds = risk_coverage(probs, labels)
    reached = np.nonzero(accuracy >= precision)[0]
    return float(thresholds[reached[-1]]) if len(reached) else NEVER


def calibrate(
    valid_logits: np.ndarray, labels: np.ndarray, fit: bool = True, precision: float | None = 0.95
) -> dict[str, Any]:
    """The `calibration` block of config.json from the validation logits."""
    valid_logits = np.asarray(valid_logits, np.float64)
    temperature = fit_temperature(valid_logits, labels) if fit else 1.0
    calibrated = softmax(valid_logits / temperature)
    threshold = 0.0 if precision is None else confidence_threshold(calibrated, labels, precision)
    if threshold == NEVER:
        log.warning(
            "no confidence threshold reaches %.0f%% validation precision: every answer is not confident",
            100 * precision,
        )
    return {
        "temperature": temperature,
        "confidence_threshold": threshold,
        "target_precision": precision,
        "fitted_on": {"split": "valid", "images": len(labels)},
        "valid_nll": {
            "raw": logit_nll(valid_logits, labels),
            "calibrated": logit_nll(valid_logits / temperature, labels),
        },
    }


def store(model_dir: str | Path, calibration: dict[str, Any]) -> None:
    """Write `calibration` into the artifact's config.json (atomically: a server reads it whole or old)."""
    path = Path(model_dir) / CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    config["calibration"] = calibration
    atomic_write_text(path, json.dumps(config, indent=2))
