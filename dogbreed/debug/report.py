"""The training report: `report.html` (self-contained) and `report.md`, from a run's saved logs.

    python -m dogbreed.report RUN_DIR [--out DIR]

Reads `metrics.csv` and, from a `debug=on` run, `debug/` (rule verdicts, step times, system metrics,
profiler tables). Sections: rule verdicts, training curves, step time breakdown, system utilisation,
top operators.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from dogbreed import command_line
from dogbreed.debug import headline
from dogbreed.errors import exit_on_user_error
from dogbreed.html_report import Page, png, pyplot

SECTIONS = ("Rule verdicts", "Training curves", "Step time breakdown", "System utilisation", "Top operators")
MISSING = "not recorded (run with debug=on)"
STYLE = "tr.issue td{background:#fde8e8}tr.not-judged td{background:#f3f3f3;color:#555}"  # verdict rows


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open())) if path.is_file() else []


def column(rows: list[dict[str, str]], key: str) -> list[tuple[float, float]]:
    """(epoch, value) pairs where `key` has a value (CSVLogger writes one metric group per row)."""
    return [(float(r["epoch"]), float(r[key])) for r in rows if r.get(key)]


def make_figures(run_dir: Path) -> dict[str, bytes]:
    """PNG bytes per figure name; a figure whose data is missing is left out."""
    plt = pyplot()
    figures: dict[str, bytes] = {}
    metrics = read_csv(run_dir / "metrics.csv")
    if metrics:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for ax, what in zip(axes, ("loss", "acc"), strict=True):
            for split in ("train", "val"):
                points = column(metrics, f"{split}/{what}")
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", label=split)
            ax.set(xlabel="epoch", ylabel=what, title=f"{what}: train vs val")
            ax.legend()
        figures["curves"] = png(fig)
    steps = read_csv(run_dir / "debug" / "steps.csv")
    if steps:
        fig, ax = plt.subplots(figsize=(10, 3.5))
        x = [int(s["step"]) for s in steps]
        wait = [float(s["data_wait_s"]) * 1000 for s in steps]
        compute = [float(s["compute_s"]) * 1000 for s in steps]
        ax.bar(x, compute, label="compute", color="C0")
        ax.bar(x, wait, bottom=compute, label="waiting for data", color="C3")
        ax.set(xlabel="step", ylabel="ms", title="step time: compute vs data wait")
        ax.legend()
        figures["steps"] = png(fig)
    system = read_csv(run_dir / "debug" / "system.csv")
    if system:
        t0 = float(system[0]["time"])
        t = [float(s["time"]) - t0 for s in system]
        fig, ax = plt.subplots(figsize=(10, 3.5))
        ax.plot(t, [float(s["cpu_percent"]) for s in system], color="C0")
        ax.set(xlabel="seconds", ylabel="CPU % of all cores", ylim=(0, 105), title="training process")
        rss = ax.twinx()
        rss.plot(t, [float(s["rss_mb"]) for s in system], color="C1")
        rss.set_ylabel("RSS MB (process + workers)", color="C1")
        figures["system"] = png(fig)
    return figures


def top_operators(run_dir: Path, lines: int = 25) -> str:
    tables = sorted((run_dir / "debug" / "profiler").glob("*profile*.txt"))
    fit = [t for t in tables if "fit" in t.name] or tables
    if not fit:
        return ""
    text = fit[0].read_text(errors="replace").splitlines()
    return "\n".join(text[:lines])


def verdict_rows(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "debug" / "rules.json"
    return json.loads(path.read_text()) if path.is_file() else []


def earlier_verdicts(run_dir: Path) -> list[Path]:
    """The verdicts of the processes a resumed run follows, oldest first (see dogbreed.debug.keep_earlier)."""
    found = (run_dir / "debug").glob("rules.until-step-*.json")
    return sorted(found, key=lambda p: int(p.name.split("-")[-1].split(".")[0]))


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write `report.html` and `report.md` (+ `report_files/`) into `out_dir` (default: the run dir)."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir or run_dir)
    if not (run_dir / "metrics.csv").is_file():
        raise FileNotFoundError(f"{run_dir} has no metrics.csv: is it a dogbreed run dir?")
    figures = make_figures(run_dir)
    verdicts = verdict_rows(run_dir)
    operators = top_operators(run_dir)
    page = Page(f"Training report: {run_dir.name}", STYLE)
    if verdicts:  # the one line a reader needs first
        page.headline(f"Rules: {headline(verdicts)}")
    for earlier in earlier_verdicts(run_dir):  # a resumed run: what the process before it judged
        page.paragraph(f"Before it resumed ({earlier.name}): {headline(json.loads(earlier.read_text()))}")
    for title, figure in zip(SECTIONS, (None, "curves", "steps", "system", None), strict=True):
        page.section(title)
        if title == "Rule verdicts" and verdicts:
            page.table(
                ("rule", "verdict", "evidence, hint or reason"),
                [(v["rule"], status(v), detail(v)) for v in verdicts],
                [v["status"].replace(" ", "-") for v in verdicts],
            )
        elif title == "Top operators":
            page.preformatted(operators or MISSING)
        elif figure in figures:
            page.image(figure, title, figures[figure])
        else:
            page.paragraph(MISSING)
    return page.write(out_dir)


def status(verdict: dict[str, Any]) -> str:
    return f"issue at step {verdict['step']}" if verdict["status"] == "issue" else verdict["status"]


def detail(verdict: dict[str, Any]) -> str:
    if verdict["status"] == "issue":
        return f"{verdict['evidence']} — hint: {verdict['hint']}"
    return verdict["reason"] if verdict["status"] == "not judged" else verdict["evidence"]


def main(argv: list[str] | None = None) -> None:
    parser = command_line.parser("dogbreed.report", __doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, help="where to write (default: the run dir)")
    args = parser.parse_args(argv)
    with exit_on_user_error(FileNotFoundError, verbose=args.verbose):
        path = write_report(args.run_dir, args.out)
        print(f"wrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
