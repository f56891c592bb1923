"""The self-contained HTML page: images embedded byte for byte, tables rendered, links to other files
unlinked, nothing referred to outside the page, a missing image named; and the external-reference
checker catches every kind of reference it is meant to."""

import base64
import re
import stat

import pytest

from ppl_uq.report.html import external_references, markdown_to_html_page, write_html_page
from ppl_uq.report.io import current_umask


def _write_png(path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1.5))
    FigureCanvasAgg(figure)
    figure.add_subplot().plot([0, 1], [1, 0])
    figure.savefig(path, format="png", dpi=50)
    return path.read_bytes()


REPORT = """# Report

Some text with `code`.

## Table

| method | ECE | gates |
|---|---|---|
| map | 0.023 | ok |
| svi | NaN | NaN in ece |

![Reliability diagrams](fig.png)

The other report is in [harness/harness.md](harness/harness.md), the paper at [the paper](https://example.org/p),
and the table [above](#table).
"""


@pytest.fixture
def page(tmp_path):
    png = _write_png(tmp_path / "fig.png")
    return markdown_to_html_page(REPORT, base_dir=tmp_path, title="A <report>"), png


def test_page_is_self_contained_with_the_image_embedded(page):
    html, png = page
    assert external_references(html) == []
    sources = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    assert base64.b64decode(sources[0].split(",", 1)[1]) == png
    assert 'alt="Reliability diagrams"' in html
    assert "<script" not in html and "<link" not in html


def test_page_renders_tables_style_and_title(page):
    html, _ = page
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<title>A &lt;report&gt;</title>" in html
    assert html.count("<table>") == 1 and "<th>method</th>" in html and "<th>gates</th>" in html
    assert '<td class="num">0.023</td>' in html and '<th class="num">ECE</th>' in html  # numbers right-aligned
    assert '<td class="num fail">NaN</td>' in html and '<td class="fail">NaN in ece</td>' in html
    assert "<td>ok</td>" in html
    assert "<style>" in html and "border" in html and "nth-child(even)" in html
    assert 'id="table"' in html and '<a href="#table">above</a>' in html  # in-page anchors stay links


def test_links_to_other_files_become_plain_text(page):
    html, _ = page
    assert '<span class="file-ref">harness/harness.md</span>' in html
    assert '<span class="file-ref">the paper (https://example.org/p)</span>' in html
    assert 'href="harness' not in html and 'href="https' not in html


def test_a_missing_image_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        markdown_to_html_page("![gone](missing.png)\n", base_dir=tmp_path, title="t")
    with pytest.raises(ValueError, match="not a local file"):
        markdown_to_html_page("![remote](https://example.org/a.png)\n", base_dir=tmp_path, title="t")
    (tmp_path / "data.csv").write_text("a\n")
    with pytest.raises(ValueError, match="unsupported format"):
        markdown_to_html_page("![csv](data.csv)\n", base_dir=tmp_path, title="t")


def test_raw_html_that_refers_outside_is_refused(tmp_path):
    with pytest.raises(ValueError, match="refer outside"):
        markdown_to_html_page('<script src="https://cdn.example.org/x.js"></script>\n', base_dir=tmp_path, title="t")


def test_write_html_page_writes_atomically_with_the_usual_mode(tmp_path):
    _write_png(tmp_path / "fig.png")
    path = write_html_page(tmp_path / "out" / "report.html", REPORT, base_dir=tmp_path, title="t")
    assert external_references(path.read_text(encoding="utf-8")) == []
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~current_umask()  # not the temporary file's 0600


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ('<script src="http://example.org/x.js"></script>', ["http://example.org/x.js"]),
        ('<link rel="stylesheet" href="style.css">', ["style.css"]),
        ('<img src="fig.png">', ["fig.png"]),
        ('<div style="background:url(x.png)">a</div>', ["x.png"]),
        ("<div style=\"background: url('y.png')\">a</div>", ["y.png"]),
        ("<style>@import 'a.css'; body { background: url(\"b.png\") }</style>", ["b.png", "a.css"]),
        ('<img srcset="a.png 1x, b.png 2x">', ["a.png", "b.png"]),
        ('<img srcset="data:image/png;base64,AAAA 1x, c.png 2x">', ["c.png"]),
        ('<a href="other.md">other</a>', ["other.md"]),
        ('<svg><image xlink:href="z.png"/></svg>', ["z.png"]),
        ('<img src="data:image/png;base64,AAAA"><a href="#top">top</a>', []),
        ('<div style="background:url(data:image/png;base64,AAAA)">a</div>', []),
    ],
)
def test_external_references_catches_every_kind(html, expected):
    assert external_references(html) == expected
