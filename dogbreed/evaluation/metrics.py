"""Evaluation numbers from an N×classes probability matrix and the true labels: numpy only, no model."""

from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (probabilities floored at 1e-12)."""
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin: images, mean top-1 confidence and top-1 accuracy (NaN when empty)."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    which = np.clip((confidence * bins).astype(int), 0, bins - 1)  # (0, 1/15], ... ; 1.0 in the last
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, confidence, bins) / count
        accuracy = np.bincount(which, correct.astype(float), bins) / count
    return {"count": count, "confidence": mean_conf, "accuracy": accuracy}


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the image-weighted gap between confidence and accuracy per bin."""
    r = reliability(probs, labels, bins)
    filled = r["count"] > 0
    gaps = np.abs(r["confidence"][filled] - r["accuracy"][filled])
    return float((gaps * r["count"][filled]).sum() / len(labels))


def per_class(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class (a class never predicted has precision 0)."""
    n = probs.shape[1]
    predicted = probs.argmax(axis=1)
    hits = np.bincount(labels[predicted == labels], minlength=n).astype(float)
    support = np.bincount(labels, minlength=n)
    claimed = np.bincount(predicted, minlength=n)
    precision = np.divide(hits, claimed, out=np.zeros(n), where=claimed > 0)
    recall = np.divide(hits, support, out=np.zeros(n), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(n), where=total > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def confused_pairs(probs: np.ndarray, labels: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(a, b, images of a predicted as b, of b predicted as a) for every pair of classes confused either
    way, the most images first: a pair such as Brittany and Welsh springer spaniel fails both ways."""
    n = probs.shape[1]
    matrix = np.zeros((n, n), int)
    np.add.at(matrix, (labels, probs.argmax(axis=1)), 1)
    both = np.triu(matrix + matrix.T, 1)
    a, b = np.nonzero(both)
    order = np.lexsort((b, a, -both[a, b]))
    return [(int(a[i]), int(b[i]), int(matrix[a[i], b[i]]), int(matrix[b[i], a[i]])) for i in order]


def risk_coverage(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coverage, accuracy, threshold) when only answers at or above each confidence are kept, most
    confident first: the curve of what abstaining buys."""
    confidence = probs.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    correct = (probs.argmax(axis=1) == labels)[order]
    kept = np.arange(1, len(labels) + 1)
    return kept / len(labels), np.cumsum(correct) / kept, confidence[order]


def not_confident(probs: np.ndarray, threshold: float) -> float:
    """The share of images whose top-1 probability is under the served confidence threshold."""
    return float((probs.max(axis=1) < threshold).mean()) if len(probs) else float("nan")


def separation(known: np.ndarray, unseen: np.ndarray) -> float:
    """AUROC of the top-1 probability between images of known classes and of unseen ones: the chance that a
    known image is answered more confidently than an unseen one (ties count half), whatever the threshold."""
    k, u = known.max(axis=1)[:, None], unseen.max(axis=1)[None, :]
    return float((k > u).mean() + 0.5 * (k == u).mean())


def agreement(probs: np.ndarray, other: np.ndarray) -> float:
    """The share of images on which two models' top-1 breeds agree."""
    return float((probs.argmax(axis=1) == other.argmax(axis=1)).mean())


def summary(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The headline numbers of one set of probabilities."""
    classes = per_class(probs, labels)
    present = classes["support"] > 0
    return {
        "top1": top_k_accuracy(probs, labels, 1),
        "top5": top_k_accuracy(probs, labels, 5),
        "balanced_accuracy": float(classes["recall"][present].mean()),
        "macro_f1": float(classes["f1"][present].mean()),
        "ece": ece(probs, labels),
        "nll": nll(probs, labels),
    }
