"""The evaluation report: `report.html` (self-contained) and `report.md`, in debug's report look.

Headline numbers, a per-breed table worst first, the most confused pairs with thumbnails of their
misclassified images, a reliability diagram and confidence histogram (before and after calibration), a
risk–coverage curve, and with `--against` the images where the two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dogbreed.data.classes import breed_name
from dogbreed.data.datamodule import Sample
from dogbreed.data.images import open_rgb
from dogbreed.evaluation import metrics
from dogbreed.evaluation.targets import Target
from dogbreed.html_report import Page, png, pyplot

PAIRS = 10  # confused pairs in the table
PAIR_SHEETS = 5  # of which this many get thumbnails
THUMBS = 12  # thumbnails per sheet
STYLE = "tr.worst td{background:#fde8e8}"


@dataclass
class Outcome:
    """Everything one evaluation measured: what the report and the files are written from."""

    split: str
    classes: list[str]
    samples: list[Sample]
    labels: np.ndarray
    probs: np.ndarray  # as served: calibrated
    raw: np.ndarray  # the same at temperature 1
    target: Target
    metrics: dict[str, Any]
    other: Target | None = None
    other_probs: np.ndarray | None = None
    unseen_probs: np.ndarray | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def headline(numbers: dict[str, Any]) -> str:
    """One line: what a person reads first, in the report, the log and the demo's summary."""
    line = (
        f"top-1 {numbers['top1']:.1%}, top-5 {numbers['top5']:.1%}, ECE {numbers['ece_raw']:.3f} → "
        f"{numbers['ece']:.3f} calibrated, not confident {numbers['not_confident']:.0%}"
    )
    if "unseen" in numbers:
        line += f" ({numbers['unseen']['not_confident']:.0%} of unseen classes)"
    return line + f" on {numbers['images']} {numbers['split']} images"


def thumbnails(items: list[tuple[Path, str]], title: str) -> bytes:
    """A contact sheet: each image small, its caption under it."""
    plt = pyplot()
    columns = min(6, len(items))
    rows = -(-len(items) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (path, caption) in zip(axes.flat, items, strict=False):
        image = open_rgb(path)
        image.thumbnail((160, 160))
        ax.imshow(image)
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title, fontsize=9)
    return png(fig)


def reliability_figure(outcome: Outcome) -> bytes:
    """Accuracy against confidence per bin, raw softmax and calibrated side by side."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (name, probs) in zip(
        axes, (("raw softmax", outcome.raw), ("calibrated", outcome.probs)), strict=True
    ):
        r = metrics.reliability(probs, outcome.labels)
        edges = np.linspace(0, 1, metrics.ECE_BINS + 1)
        filled = r["count"] > 0
        ax.bar(
            edges[:-1][filled],
            r["accuracy"][filled],
            width=1 / metrics.ECE_BINS,
            align="edge",
            edgecolor="k",
            color="C0",
            label="accuracy",
        )
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.plot(r["confidence"][filled], r["accuracy"][filled], "o", color="C3", label="mean confidence")
        ece = metrics.ece(probs, outcome.labels)
        ax.set(
            xlabel="top-1 confidence",
            ylabel="accuracy",
            xlim=(0, 1),
            ylim=(0, 1),
            title=f"{name}: ECE {ece:.3f}",
        )
        ax.legend(loc="upper left", fontsize=8)
    return png(fig)


def confidence_figure(outcome: Outcome) -> bytes:
    """How confident the served top-1 is, right against wrong (and unseen classes), with the threshold."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.5))
    confidence = outcome.probs.max(axis=1)
    correct = outcome.probs.argmax(axis=1) == outcome.labels
    bins = np.linspace(0, 1, 21)
    ax.hist(
        [confidence[correct], confidence[~correct]],
        bins,
        stacked=True,
        color=["C2", "C3"],
        label=["right", "wrong"],
    )
    if outcome.unseen_probs is not None:
        ax.hist(
            outcome.unseen_probs.max(axis=1),
            bins,
            histtype="step",
            color="k",
            linewidth=2,
            label="unseen classes",
        )
    threshold = outcome.metrics["confidence_threshold"]
    if 0 < threshold <= 1:
        ax.axvline(threshold, color="k", linestyle="--", label=f"confident from {threshold:.2f}")
    ax.set(xlabel="calibrated top-1 probability", ylabel="images", title="confidence of the answers")
    ax.legend(fontsize=8)
    return png(fig)


def risk_coverage_figure(outcome: Outcome) -> bytes:
    """Accuracy of the answers kept when the model may abstain below each confidence."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.5))
    coverage, accuracy, thresholds = metrics.risk_coverage(outcome.probs, outcome.labels)
    ax.plot(coverage, accuracy, color="C0")
    threshold = outcome.metrics["confidence_threshold"]
    kept = thresholds >= threshold
    if kept.any() and threshold > 0:
        i = np.nonzero(kept)[0][-1]
        ax.plot(
            coverage[i],
            accuracy[i],
            "o",
            color="C3",
            label=f"served threshold {threshold:.2f}: {coverage[i]:.0%} answered, {accuracy[i]:.1%} right",
        )
        ax.legend(fontsize=8)
    ax.set(
        xlabel="coverage (share of images answered confidently)",
        ylabel="accuracy of those",
        ylim=(0, 1.02),
        xlim=(0, 1),
        title="risk–coverage",
    )
    return png(fig)


def _pct(value: float) -> str:
    return f"{value:.1%}"


def numbers_table(m: dict[str, Any]) -> list[list[str]]:
    rows = [
        ["top-1 accuracy", _pct(m["top1"])],
        ["top-5 accuracy", _pct(m["top5"])],
        ["balanced accuracy", _pct(m["balanced_accuracy"])],
        ["macro F1", f"{m['macro_f1']:.3f}"],
        ["ECE (15 bins): raw softmax → calibrated", f"{m['ece_raw']:.4f} → {m['ece']:.4f}"],
        ["NLL: raw softmax → calibrated", f"{m['nll_raw']:.4f} → {m['nll']:.4f}"],
        ["temperature", f"{m['temperature']:.3f}"],
        ["confidence threshold", f"{m['confidence_threshold']:.3f}"],
        ["not confident (this split)", _pct(m["not_confident"])],
    ]
    if "unseen" in m:
        u = m["unseen"]
        rows.append([f"not confident (unseen classes, {u['images']} images)", _pct(u["not_confident"])])
        rows.append(["AUROC, this split against unseen classes (top-1 probability)", f"{u['auroc']:.3f}"])
    rows += [
        ["images (skipped)", f"{m['images']} ({len(m['skipped'])})"],
        ["images/s", f"{m['images_per_s']:.1f}"],
        ["answered by", f"{m['target']['name']} ({m['runtime']})"],
    ]
    if "model" in m:
        rows.append(["model weights (sha256)", m["model"]["weights_sha256"][:16]])
    return rows


def write_report(outcome: Outcome, out_dir: Path) -> Path:
    """report.html, report.md and report_files/ into `out_dir`."""
    m, names = outcome.metrics, [breed_name(c) for c in outcome.classes]
    page = Page(f"Evaluation: {m['split']} split", STYLE)
    page.headline(headline(m))
    page.section("Headline numbers")
    page.table(["", "value"], numbers_table(m))
    if m["skipped"]:
        page.paragraph("Skipped (unreadable): " + "; ".join(f"{s['file']}: {s['why']}" for s in m["skipped"]))

    page.section("Per breed, worst first")
    per = metrics.per_class(outcome.probs, outcome.labels)
    order = sorted(
        (i for i in range(len(names)) if per["support"][i]), key=lambda i: (per["f1"][i], per["recall"][i])
    )
    rows = [
        [
            names[i],
            f"{per['precision'][i]:.2f}",
            f"{per['recall'][i]:.2f}",
            f"{per['f1'][i]:.2f}",
            str(per["support"][i]),
        ]
        for i in order
    ]
    page.table(
        ["breed", "precision", "recall", "F1", "support"],
        rows,
        ["worst" if per["f1"][i] < m["macro_f1"] else "" for i in order],
    )

    page.section("Most confused pairs")
    pairs = metrics.confused_pairs(outcome.probs, outcome.labels)[:PAIRS]
    if not pairs:
        page.paragraph("No image was misclassified.")
    else:
        page.table(
            ["breed A", "breed B", "A predicted as B", "B predicted as A"],
            [[names[a], names[b], str(ab), str(ba)] for a, b, ab, ba in pairs],
        )
        predicted = outcome.probs.argmax(axis=1)
        for rank, (a, b, ab, ba) in enumerate(pairs[:PAIR_SHEETS], 1):
            wrong = [i for i, (_, y) in enumerate(outcome.samples) if (y, predicted[i]) in ((a, b), (b, a))]
            items = [
                (
                    outcome.samples[i][0],
                    f"{names[outcome.labels[i]][:18]}\nas {names[predicted[i]][:15]} "
                    f"{outcome.probs[i, predicted[i]]:.0%}",
                )
                for i in wrong
            ]
            page.image(
                f"pair-{rank}",
                f"{names[a]} and {names[b]}: misclassified images",
                thumbnails(items[:THUMBS], f"{names[a]} ↔ {names[b]} ({ab} + {ba} images)"),
            )

    page.section("Calibration")
    page.paragraph(
        f"One temperature ({m['temperature']:.3f}, fitted on the validation split) divides the logits. "
        f"On this split ECE goes from {m['ece_raw']:.4f} (raw softmax) to {m['ece']:.4f} and NLL from "
        f"{m['nll_raw']:.4f} to {m['nll']:.4f}; accuracy is unchanged."
    )
    page.image("reliability", "reliability diagram", reliability_figure(outcome))
    page.image("confidence", "confidence histogram", confidence_figure(outcome))

    page.section("Abstaining: risk–coverage")
    text = (
        f"Answers whose calibrated top-1 probability is under {m['confidence_threshold']:.3f} are served "
        f'with "confident": false: {_pct(m["not_confident"])} of this split'
    )
    if "unseen" in m:
        text += f", {_pct(m['unseen']['not_confident'])} of images of classes the model never saw"
    page.paragraph(text + ".")
    page.image("risk-coverage", "risk-coverage curve", risk_coverage_figure(outcome))

    if outcome.other is not None:
        against_section(page, outcome, names)
    return page.write(out_dir)


def against_section(page: Page, outcome: Outcome, names: list[str]) -> None:
    """Top-1 agreement, the accuracy delta, and the images where the two answers differ."""
    a = outcome.metrics["against"]
    page.section(f"Against {a['name']}")
    page.paragraph(
        f"Top-1 agreement {a['top1_agreement']:.2%} ({a['differing_images']} of "
        f"{outcome.metrics['images']} images differ); top-1 {outcome.metrics['top1']:.2%} "
        f"({outcome.target.name}) against {a['top1']:.2%} ({a['name']}): "
        f"a delta of {100 * a['top1_delta']:+.2f} points."
    )
    ours, theirs = outcome.probs.argmax(axis=1), outcome.other_probs.argmax(axis=1)
    differ = np.nonzero(ours != theirs)[0]
    if not len(differ):
        return
    page.table(
        ["file", "true breed", outcome.target.name, a["name"]],
        [
            [outcome.samples[i][0].name, names[outcome.labels[i]], names[ours[i]], names[theirs[i]]]
            for i in differ
        ],
    )
    items = [(outcome.samples[i][0], f"{names[ours[i]][:16]}\nvs {names[theirs[i]][:16]}") for i in differ]
    page.image(
        "differences", "images where the two differ", thumbnails(items[: 2 * THUMBS], "where they differ")
    )
