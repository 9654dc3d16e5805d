"""A report as a list of blocks, rendered once to Markdown and once to self-contained HTML.

Markdown links the figures as PNG files beside it; HTML embeds the same PNG bytes as
base64 ``data:`` URIs, so ``report.html`` can be mailed or archived on its own. Every table
carries its caption (``<caption>`` in HTML, an italic line above it in Markdown); a table
wider than the page scrolls sideways in its own box instead of running off the page.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    """A list of short facts (a block's settings, warnings)."""

    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    name: str  # file name under the figures folder
    png: bytes
    caption: str = ""
    # renders the same figure as another format ("pdf", "svg") for a paper; None: PNG only
    render: Callable[[str], bytes] | None = field(default=None, repr=False, compare=False)


@dataclass
class Document:
    title: str
    blocks: list[Heading | Paragraph | Bullets | Table | Figure] = field(default_factory=list)

    def add(self, block: Heading | Paragraph | Bullets | Table | Figure) -> None:
        self.blocks.append(block)

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


def to_markdown(doc: Document, figures_dir: str) -> str:
    out = [f"# {_md(doc.title)}", ""]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out += [f"{'#' * b.level} {_md(b.text)}", ""]
        elif isinstance(b, Paragraph):
            out += [_md(b.text), ""]
        elif isinstance(b, Bullets):
            out += [f"- {_md(item)}" for item in b.items] + [""]
        elif isinstance(b, Table):
            if b.caption:
                out += [f"*{_md(b.caption)}*", ""]
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "|".join(" --- " for _ in b.header) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        else:
            out += [f"![{_md(b.caption or b.name)}]({figures_dir}/{b.name})", ""]
            if b.caption:
                out += [f"*{_md(b.caption)}*", ""]
    return "\n".join(out).rstrip() + "\n"


def to_html(doc: Document) -> str:
    body = []
    for b in doc.blocks:
        if isinstance(b, Heading):
            level = min(max(b.level, 1), 6)
            body.append(f"<h{level}>{html.escape(b.text)}</h{level}>")
        elif isinstance(b, Paragraph):
            body.append(f"<p>{html.escape(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            caption = f"<caption>{html.escape(b.caption)}</caption>" if b.caption else ""
            body.append(f'<div class="table">'
                        f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>")
        else:
            data = base64.b64encode(b.png).decode("ascii")
            caption = f"<figcaption>{html.escape(b.caption)}</figcaption>" if b.caption else ""
            body.append(f'<figure><img alt="{html.escape(b.caption or b.name)}" '
                        f'src="data:image/png;base64,{data}">{caption}</figure>')
    return _HTML.format(title=html.escape(doc.title), body="\n".join(body))


def _md_cell(text: str) -> str:
    return _md(text).replace("|", "\\|").replace("\n", " ")


def _md(text: str) -> str:
    """Markdown renders raw HTML: escape it, so a label like ``<script>`` stays text."""
    return html.escape(text, quote=False)


_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }}
div.table {{ overflow-x: auto; margin: 1em 0; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }}
th {{ background: #f3f3f3; }}
caption {{ caption-side: top; text-align: left; font-style: italic; padding-bottom: 0.3em;
           position: sticky; left: 0; max-width: 1060px; }}
figure {{ margin: 1.2em 0; }}
img {{ max-width: 100%; }}
figcaption {{ font-style: italic; font-size: 0.9em; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""
