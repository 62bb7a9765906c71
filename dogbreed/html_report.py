"""Reports written twice from one description: a self-contained HTML page and its markdown twin.

The HTML embeds every figure (one file to mail or open from a job's output); the markdown links the same
PNGs from a `<stem>_files/` folder (readable in a repository or a terminal). The training report
(`dogbreed.debug.report`) and the evaluation report build on it, so it imports nothing of theirs, and
matplotlib only where a figure is rendered: a report without figures never loads it.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
    ".headline{font-size:1.2rem;font-weight:600}"
    "img{max-width:100%}pre{background:#f6f6f6;padding:1rem;overflow:auto}"
)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed (a report makes many)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    pyplot().close(fig)
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class Page:
    """One report under construction: each block is added to the HTML body and the markdown at once."""

    def __init__(self, title: str, style: str = "", stem: str = "report") -> None:
        """`style`: CSS added to the shared one; `stem`: names the files (`<stem>.html`, `.md`, `_files/`)."""
        self.title, self.style, self.stem = title, STYLE + style, stem
        self.body = [f"<h1>{html.escape(title)}</h1>"]
        self.md = [f"# {title}", ""]
        self.figures: dict[str, bytes] = {}

    def headline(self, text: str) -> None:
        """The one line a reader needs first, in bold."""
        self.body.append(f"<p class='headline'>{html.escape(text)}</p>")
        self.md += [f"**{text}**", ""]

    def section(self, title: str) -> None:
        self.body.append(f"<h2>{html.escape(title)}</h2>")
        self.md += [f"## {title}", ""]

    def paragraph(self, text: str) -> None:
        self.body.append(f"<p>{html.escape(text)}</p>")
        self.md += [text, ""]

    def table(
        self, header: Sequence[str], rows: Sequence[Sequence[str]], row_classes: Sequence[str] | None = None
    ) -> None:
        """Cells are text (escaped here); `row_classes` names a CSS class per row (see `style`)."""
        classes = row_classes or [""] * len(rows)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        lines = "".join(
            (f"<tr class='{html.escape(c)}'>" if c else "<tr>")
            + "".join(f"<td>{html.escape(cell)}</td>" for cell in row)
            + "</tr>"
            for row, c in zip(rows, classes, strict=True)
        )
        self.body.append(f"<table><tr>{head}</tr>{lines}</table>")
        self.md += [
            "| " + " | ".join(map(_md_cell, header)) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(map(_md_cell, row)) + " |" for row in rows),
            "",
        ]

    def preformatted(self, text: str) -> None:
        self.body.append(f"<pre>{html.escape(text)}</pre>")
        self.md += ["```", text, "```", ""]

    def image(self, name: str, alt: str, data: bytes) -> None:
        """PNG `data`: embedded in the HTML, `<stem>_files/<name>.png` in the markdown."""
        self.figures[name] = data
        encoded = base64.b64encode(data).decode()
        self.body.append(f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{encoded}'>")
        self.md += [f"![{alt}]({self.stem}_files/{name}.png)", ""]

    def write(self, out_dir: str | Path) -> Path:
        """`<stem>.html`, `<stem>.md` and `<stem>_files/` into `out_dir`; returns the HTML's path."""
        out_dir, stem = Path(out_dir), self.stem
        files = out_dir / f"{stem}_files"
        files.mkdir(parents=True, exist_ok=True)
        for name, data in self.figures.items():
            (files / f"{name}.png").write_bytes(data)
        page = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{self.style}</style></head><body>{''.join(self.body)}</body></html>"
        )
        (out_dir / f"{stem}.html").write_text(page, encoding="utf-8")
        (out_dir / f"{stem}.md").write_text("\n".join(self.md), encoding="utf-8")
        return out_dir / f"{stem}.html"
