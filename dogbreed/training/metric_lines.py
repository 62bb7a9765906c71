"""The training log lines that tuning jobs parse — one format, and regexes generated from it.

After each validation epoch: `epoch=<int> val_loss=<float> val_acc=<float>`.
After testing: `test_loss=<float> test_acc=<float>`.
"""

from __future__ import annotations

import re

FLOAT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf"
METRICS = ("val_loss", "val_acc", "test_loss", "test_acc")


def epoch_line(epoch: int, val_loss: float, val_acc: float) -> str:
    return f"epoch={epoch} val_loss={val_loss:.6f} val_acc={val_acc:.6f}"


def test_line(test_loss: float, test_acc: float) -> str:
    return f"test_loss={test_loss:.6f} test_acc={test_acc:.6f}"


def metric_regex(name: str) -> str:
    """A regex whose first group captures metric `name` from our lines (SageMaker MetricDefinitions)."""
    return rf"\b{re.escape(name)}=({FLOAT})"


def metric_definitions() -> list[dict[str, str]]:
    return [{"Name": name, "Regex": metric_regex(name)} for name in METRICS]


def parse_metrics(text: str) -> dict[str, list[float]]:
    """Every value of every metric in a log, in order (what SageMaker would extract)."""
    return {name: [float(v) for v in re.findall(metric_regex(name), text)] for name in METRICS}
