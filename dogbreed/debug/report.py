"""The training report: `report.html` (self-contained) and `report.md`, from a run's saved logs.

    python -m dogbreed.report RUN_DIR [--out DIR]

Reads `metrics.csv` and, from a `debug=on` run, `debug/` (rule verdicts, step times, system metrics,
profiler tables). Sections: rule verdicts, training curves, step time breakdown, system utilisation,
top operators.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any

from dogbreed.debug import headline
from dogbreed.errors import exit_on_user_error

SECTIONS = ("Rule verdicts", "Training curves", "Step time breakdown", "System utilisation", "Top operators")


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open())) if path.is_file() else []


def column(rows: list[dict[str, str]], key: str) -> list[tuple[float, float]]:
    """(epoch, value) pairs where `key` has a value (CSVLogger writes one metric group per row)."""
    return [(float(r["epoch"]), float(r[key])) for r in rows if r.get(key)]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def make_figures(run_dir: Path) -> dict[str, bytes]:
    """PNG bytes per figure name; a figure whose data is missing is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        figures["curves"] = _png(fig)
        plt.close(fig)
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
        figures["steps"] = _png(fig)
        plt.close(fig)
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
        figures["system"] = _png(fig)
        plt.close(fig)
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
    (out_dir / "report_files").mkdir(parents=True, exist_ok=True)
    for name, data in figures.items():
        (out_dir / "report_files" / f"{name}.png").write_bytes(data)

    def status(v: dict[str, Any]) -> str:
        return f"issue at step {v['step']}" if v["status"] == "issue" else v["status"]

    def detail(v: dict[str, Any]) -> str:
        if v["status"] == "issue":
            return f"{v['evidence']} — hint: {v['hint']}"
        return v["reason"] if v["status"] == "not judged" else v["evidence"]

    missing = "not recorded (run with debug=on)"
    md = [f"# Training report: {run_dir.name}", ""]
    body = [f"<h1>Training report: {html.escape(run_dir.name)}</h1>"]
    if verdicts:  # the one line a reader needs first
        md += [f"**Rules: {headline(verdicts)}**", ""]
        body.append(f"<p class='headline'>Rules: {html.escape(headline(verdicts))}</p>")
    for earlier in earlier_verdicts(run_dir):  # a resumed run: what the process before it judged
        line = f"Before it resumed ({earlier.name}): {headline(json.loads(earlier.read_text()))}"
        md += [line, ""]
        body.append(f"<p>{html.escape(line)}</p>")
    for title, figure in zip(SECTIONS, (None, "curves", "steps", "system", None), strict=True):
        md += [f"## {title}", ""]
        body.append(f"<h2>{title}</h2>")
        if title == "Rule verdicts":
            if verdicts:
                md += ["| rule | verdict | evidence, hint or reason |", "|---|---|---|"]
                md += [f"| {v['rule']} | {status(v)} | {detail(v)} |" for v in verdicts]
                rows = "".join(
                    f"<tr class='{v['status'].replace(' ', '-')}'><td>{v['rule']}</td><td>{status(v)}</td>"
                    f"<td>{html.escape(detail(v))}</td></tr>"
                    for v in verdicts
                )
                head = "<tr><th>rule</th><th>verdict</th><th>evidence, hint or reason</th></tr>"
                body.append(f"<table>{head}{rows}</table>")
            else:
                md.append(missing)
                body.append(f"<p>{missing}</p>")
        elif title == "Top operators":
            md += ["```", operators or missing, "```"]
            body.append(f"<pre>{html.escape(operators or missing)}</pre>")
        elif figure in figures:
            md.append(f"![{title}](report_files/{figure}.png)")
            data = base64.b64encode(figures[figure]).decode()
            body.append(f"<img alt='{title}' src='data:image/png;base64,{data}'>")
        else:
            md.append(missing)
            body.append(f"<p>{missing}</p>")
        md.append("")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
        "tr.issue td{background:#fde8e8}tr.not-judged td{background:#f3f3f3;color:#555}"
        ".headline{font-size:1.2rem;font-weight:600}"
        "img{max-width:100%}pre{background:#f6f6f6;padding:1rem;overflow:auto}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>report {html.escape(run_dir.name)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    (out_dir / "report.md").write_text("\n".join(md), encoding="utf-8")
    return out_dir / "report.html"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, help="where to write (default: the run dir)")
    args = parser.parse_args(argv)
    with exit_on_user_error(FileNotFoundError):
        path = write_report(args.run_dir, args.out)
    print(f"wrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
