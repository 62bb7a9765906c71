"""The shared report toolkit: one description, an HTML page and its markdown twin; light to import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dogbreed.html_report import Page, png, pyplot
from tests.conftest import REPO


def test_a_page_is_written_as_html_and_markdown(tmp_path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    figure = png(fig)
    assert figure.startswith(b"\x89PNG") and not plt.get_fignums(), "rendered and closed"

    page = Page("Evaluation: <run>", style="tr.bad td{color:red}", stem="evaluation")
    page.headline("2 of 3 breeds above 0.9")
    page.section("Per breed")
    page.table(("breed", "note"), [("Akita", "a | b"), ("Beagle", "<ok>")], ["bad", ""])
    page.image("confusion", "Confusion matrix", figure)
    page.preformatted("x  y")
    page.paragraph("done")
    html_path = page.write(tmp_path)

    assert html_path == tmp_path / "evaluation.html"
    text = html_path.read_text()
    assert "<title>Evaluation: &lt;run&gt;</title>" in text and "tr.bad td{color:red}" in text
    assert "<p class='headline'>2 of 3 breeds above 0.9</p>" in text
    rows = "<tr class='bad'><td>Akita</td><td>a | b</td></tr><tr><td>Beagle</td><td>&lt;ok&gt;</td></tr>"
    assert rows in text
    assert text.count("src='data:image/png;base64,") == 1 and "evaluation_files" not in text
    md = (tmp_path / "evaluation.md").read_text()
    assert md.splitlines()[:4] == ["# Evaluation: <run>", "", "**2 of 3 breeds above 0.9**", ""]
    assert "| Akita | a \\| b |" in md, "a pipe in a cell does not split it"
    assert "![Confusion matrix](evaluation_files/confusion.png)" in md
    assert (tmp_path / "evaluation_files" / "confusion.png").read_bytes() == figure


def test_importing_it_loads_no_matplotlib_and_nothing_above_it() -> None:
    code = (
        "import sys, dogbreed.html_report; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'launch') "
        "or m.startswith(('dogbreed.training', 'dogbreed.debug'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
