"""The report's front page: the plain-language summary (summary.md) as HTML, the overview
figure below it. The HTML report opens with it (workflow/report/workflow.rst).

The summary uses a small part of markdown: `#` headings, paragraphs, `- ` list items, indented
note lines, **bold** and `code`; that part is what `render` converts.
"""

from __future__ import annotations

import base64
import html
import re
import textwrap

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def render(summary_markdown: str, overview_png: bytes | None = None) -> str:
    """An HTML fragment (it is also embedded in the report's own page): the summary, then the
    overview figure as an inline PNG. No line is longer than a few hundred characters: the report
    passes the page through docutils, which refuses lines over 10,000."""
    parts = ['<meta charset="utf-8">', '<div class="sweetspot-summary">']
    items: list[str] = []
    for line in summary_markdown.splitlines():
        if items and not line.startswith("- "):
            parts.append("<ul>\n" + "\n".join(items) + "\n</ul>")
            items = []
        heading = re.match(r"^(#{1,4}) (.*)$", line)
        if heading:
            level = len(heading.group(1))
            parts.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.startswith("- "):
            items.append(f"<li>{_inline(line[2:])}</li>")
        elif line.strip():
            parts.append(f"<p>{_inline(line.strip())}</p>")
    if items:
        parts.append("<ul>\n" + "\n".join(items) + "\n</ul>")
    if overview_png is not None:
        data = base64.encodebytes(overview_png).decode("ascii")  # 76 per line; browsers skip the breaks
        parts.append('<h2>Overview</h2><p>The gain over the matched control at every sparsity: how to read it is '
                     'in the overview figure\'s caption (Summary, overview.png).</p>')
        parts.append(f'<img alt="overview of the gains" style="max-width:100%" src="data:image/png;base64,{data}">')
    parts.append("</div>")
    return "\n".join(parts) + "\n"


def _inline(text: str) -> str:
    marked = _CODE.sub(r"<code>\1</code>", _BOLD.sub(r"<strong>\1</strong>", html.escape(text, quote=False)))
    return textwrap.fill(marked, width=200, break_long_words=False, break_on_hyphens=False)
