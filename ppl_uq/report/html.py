"""One self-contained HTML page from a report's Markdown: images embedded, style inline, no references out.

Our reports are Markdown with pipe tables, ``![alt](figure.png)`` images relative to the report's folder
and relative links to other Markdown files. ``markdown_to_html_page`` renders them with the ``markdown``
package (extensions ``tables``, ``toc``, ``sane_lists``) and then, on the element tree, before it is
serialised:

- every image is read from ``base_dir`` and embedded as a ``data:`` URI (PNG, JPEG, GIF, SVG); a missing
  image, a remote one or an unknown format is an error naming the file;
- every link that is not an in-page ``#anchor`` (another ``.md`` file, a web address) becomes plain text
  (the link text, with its target in brackets when that differs), so the page refers to nothing outside;
- table cells that hold numbers are right-aligned, and a "gates" / "failed" cell that is not "ok" / "none",
  or any cell that reads NaN, is highlighted.

The page has no scripts, fonts or stylesheets from elsewhere, and a Content-Security-Policy that forbids
loading any; ``external_references`` lists anything that would still be fetched (it must return []).
"""

from __future__ import annotations

import base64
import html as html_escape
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

from .io import atomic_write_text

#: MIME types of the image formats that can be embedded, by file suffix.
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".svg": "image/svg+xml", ".webp": "image/webp"}
#: Header texts of the columns that hold gate results; cells other than ``PASSING`` are highlighted.
GATE_HEADERS = {"gate", "gates", "failed", "flags"}
PASSING = {"ok", "none", "", "—"}
_NUMBER = re.compile(r"^[-+−]?(\d[\d,]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*%?$|^(NaN|-?inf|—)$")

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #1f2328; background: #fff; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 1.7em; border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.35em; border-bottom: 1px solid #d0d7de; padding-bottom: .25em; margin-top: 2em; }
h3 { font-size: 1.1em; margin-top: 1.5em; }
nav.toc { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 16px;
          font-size: .9em; display: inline-block; }
nav.toc ul { margin: 0; padding-left: 1.2em; }
.table-wrap { overflow-x: auto; margin: 12px 0 20px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 4px 9px; vertical-align: top; }
th { background: #eaeef2; text-align: left; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #f6f8fa; }
tbody tr:hover { background: #fff8c5; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.fail { background: #ffebe9; color: #82071e; font-weight: 600; }
img { max-width: 100%; height: auto; display: block; margin: 12px 0 24px; border: 1px solid #eaeef2; }
code { background: #f6f8fa; padding: 0 .3em; border-radius: 4px; font-size: .9em; }
.file-ref { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em;
            background: #f6f8fa; padding: 0 .3em; border-radius: 4px; }
"""

#: Forbids the browser to fetch anything: images only from data: URIs, style only inline.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _is_in_page(reference: str) -> bool:
    """True for a ``data:`` URI or an in-page ``#anchor``, the only references a page may hold."""
    reference = reference.strip()
    return reference.startswith("#") or reference.lower().startswith("data:")


def _data_uri(src: str, base_dir: Path) -> str:
    """Return the image ``src`` (relative to ``base_dir``) as a base64 ``data:`` URI.

    Raises:
        ValueError: ``src`` is remote (has a scheme or host) or its suffix is not in ``IMAGE_TYPES``.
        FileNotFoundError: the file does not exist (the message names ``src`` and the path tried).
    """
    parts = urlsplit(src)
    if parts.scheme or parts.netloc:
        raise ValueError(f"image {src!r} is not a local file; a self-contained page can only embed local images")
    path = base_dir / unquote(parts.path)
    mime = IMAGE_TYPES.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"image {src!r} has an unsupported format; supported: {sorted(IMAGE_TYPES)}")
    if not path.is_file():
        raise FileNotFoundError(f"image {src!r} not found (looked for {path})")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _unlink(anchor: ElementTree.Element) -> None:
    """Turn the link ``anchor`` into plain text: a ``span.file-ref`` holding the link text, followed by
    the target in brackets when the text does not already say it."""
    target = anchor.attrib.pop("href", "")
    anchor.attrib.clear()
    anchor.tag = "span"
    anchor.set("class", "file-ref")
    text = "".join(anchor.itertext()).strip()
    if target and target != text:
        suffix = f" ({target})"
        if len(anchor):
            last = anchor[-1]
            last.tail = (last.tail or "") + suffix
        else:
            anchor.text = (anchor.text or "") + suffix


def _mark_cells(table: ElementTree.Element) -> None:
    """Give numeric cells the class ``num`` (and the header of an all-numeric column too, so it lines up
    with its numbers), and failed-gate / NaN cells the class ``fail``."""
    header_cells = list(table.iter("th"))
    headers = ["".join(th.itertext()).strip().lower() for th in header_cells]
    numeric = [True] * len(headers)
    for row in table.iter("tr"):
        for column, cell in enumerate(row.findall("td")):
            text = "".join(cell.itertext()).strip()
            classes = []
            if _NUMBER.match(text):
                classes.append("num")
            elif column < len(numeric):
                numeric[column] = False
            gate = column < len(headers) and headers[column] in GATE_HEADERS
            if (gate and text.lower() not in PASSING) or text == "NaN":
                classes.append("fail")
            if classes:
                cell.set("class", " ".join(classes))
    for th, is_numeric in zip(header_cells, numeric, strict=False):
        if is_numeric:
            th.set("class", "num")


class _SelfContained(Treeprocessor):
    """Embeds images, unlinks references out of the page and marks table cells (see the module docs)."""

    def __init__(self, md: Any, base_dir: Path) -> None:
        super().__init__(md)
        self.base_dir = base_dir

    def run(self, root: ElementTree.Element) -> None:
        for image in root.iter("img"):
            image.set("src", _data_uri(image.get("src", ""), self.base_dir))
        for anchor in list(root.iter("a")):
            if not anchor.get("href", "").startswith("#"):
                _unlink(anchor)
        for parent in list(root.iter()):
            for index, child in enumerate(list(parent)):
                if child.tag == "table":
                    _mark_cells(child)
                    wrapper = ElementTree.Element("div", {"class": "table-wrap"})
                    wrapper.tail, child.tail = child.tail, None
                    parent.remove(child)
                    wrapper.append(child)
                    parent.insert(index, wrapper)


class _SelfContainedExtension(Extension):
    def __init__(self, base_dir: Path) -> None:
        super().__init__()
        self.base_dir = base_dir

    def extendMarkdown(self, md: Any) -> None:  # noqa: N802 (the markdown package's name)
        # after "inline" (links and images exist) and before "prettify"
        md.treeprocessors.register(_SelfContained(md, self.base_dir), "self_contained", 15)


def _with_toc(body: str, toc: str) -> str:
    """``body`` with the table of contents ``toc`` after its first ``<h1>`` (or at the top)."""
    if "<li>" not in toc:
        return body
    nav = f'<nav class="toc">\n{toc}</nav>\n'
    end = body.find("</h1>")
    if end < 0:
        return nav + body
    end += len("</h1>")
    return body[:end] + "\n" + nav + body[end:]


def markdown_to_html_page(markdown_text: str, *, base_dir: str | os.PathLike[str], title: str) -> str:
    """Return one self-contained HTML page (a complete document) rendering ``markdown_text``.

    Images are read relative to ``base_dir`` and embedded as ``data:`` URIs; links to anything but an
    in-page ``#anchor`` become plain text; the style is inline. The result has no external reference
    (``external_references(page) == []``).

    Raises:
        FileNotFoundError: an image does not exist (the message names it).
        ValueError: an image is remote or of an unsupported format, or raw HTML in ``markdown_text``
            refers to something outside the page.
    """
    converter = markdown.Markdown(
        extensions=["tables", "sane_lists", "toc", _SelfContainedExtension(Path(base_dir))],
        extension_configs={"toc": {"toc_depth": "2-3"}},
        output_format="html",
    )
    body = _with_toc(converter.convert(markdown_text), converter.toc)
    page = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html_escape.escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        body,
        "</main>",
        "</body>",
        "</html>",
        "",
    ])
    leftover = external_references(page)
    if leftover:
        raise ValueError(f"the page would refer outside itself (raw HTML in the Markdown?): {leftover}")
    return page


def write_html_page(
    path: str | os.PathLike[str], markdown_text: str, *, base_dir: str | os.PathLike[str], title: str
) -> Path:
    """Write ``markdown_to_html_page(markdown_text, base_dir=base_dir, title=title)`` to ``path``
    atomically; return the path."""
    return atomic_write_text(path, markdown_to_html_page(markdown_text, base_dir=base_dir, title=title))


# -- checking a page -------------------------------------------------------------------------------
#: Attributes whose value is one URL.
URL_ATTRIBUTES = {"src", "href", "xlink:href", "poster", "data", "action", "formaction", "background",
                  "cite", "longdesc", "manifest", "ping", "icon", "profile"}
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)]*?))\s*\)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"""@import\s+(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)


def _srcset_urls(value: str) -> list[str]:
    """The URLs of a ``srcset`` value (the HTML spec's split: a URL runs to whitespace; trailing commas
    end it), so the commas inside a ``data:`` URI do not split it."""
    urls, position = [], 0
    while position < len(value):
        while position < len(value) and (value[position].isspace() or value[position] == ","):
            position += 1
        start = position
        while position < len(value) and not value[position].isspace():
            position += 1
        url = value[start:position]
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            depth = 0  # skip the descriptors, up to the next comma outside parentheses
            while position < len(value) and (value[position] != "," or depth):
                depth += {"(": 1, ")": -1}.get(value[position], 0)
                position += 1
        if url:
            urls.append(url)
    return urls


def _css_references(css: str) -> list[str]:
    """Every ``url(...)`` and ``@import "..."`` target in the CSS text ``css``."""
    found = ["".join(groups) for groups in _CSS_URL.findall(css)]
    return found + ["".join(groups) for groups in _CSS_IMPORT.findall(css)]


class _ReferenceCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.references: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in URL_ATTRIBUTES:
                self.references.append(value)
            elif name in ("srcset", "imagesrcset"):
                self.references += _srcset_urls(value)
            elif name == "style":
                self.references += _css_references(value)
        if tag == "style":
            self._in_style = True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "style":
            self._in_style = False

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.references += _css_references(data)


def external_references(html: str) -> list[str]:
    """Return every reference in the HTML text ``html`` that would load or lead outside the page, in
    document order: ``src``, ``href`` (and other URL attributes), ``srcset`` candidates, and ``url(...)``
    / ``@import`` in ``style`` attributes and ``<style>`` elements, except ``data:`` URIs and in-page
    ``#anchors``. A self-contained page returns []."""
    collector = _ReferenceCollector()
    collector.feed(html)
    collector.close()
    return [reference for reference in collector.references if not _is_in_page(reference)]
