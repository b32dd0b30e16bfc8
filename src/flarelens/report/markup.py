"""The page's HTML building blocks: tables, sections, embedded images, the style sheet.

Hand-written rather than a template engine: the page is a dozen elements, and keeping it
free of scripts and external files (readable offline, safe to mail) is easiest by hand.
"""

from __future__ import annotations

import base64
import html
from typing import Sequence

import numpy as np
import pandas as pd


def esc(text) -> str:
    """``text`` escaped for HTML."""
    return html.escape(str(text))


def p(text: str, cls: str | None = None) -> str:
    """A paragraph of (already escaped) HTML."""
    return f'<p class="{cls}">{text}</p>' if cls else f"<p>{text}</p>"


def section(anchor: str, title: str, body: str) -> str:
    """One top-level section of the page (a ``<section id=anchor>`` with its heading)."""
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>\n{body}\n</section>\n'


def details(summary: str, body: str, open_: bool = False) -> str:
    """A folded block: ``summary`` always shown, ``body`` on a click (no script needed)."""
    return f'<details{" open" if open_ else ""}><summary>{esc(summary)}</summary>\n{body}\n</details>'


def img(data: bytes, alt: str, max_width: str | None = None) -> str:
    """An ``<img>`` with the PNG ``data`` embedded (base64), so the page needs no other file."""
    style = f' style="max-width:{max_width}"' if max_width else ""
    return f'<img alt="{esc(alt)}"{style} src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def num(value, digits: int = 2) -> str:
    """A number for the page: ``—`` when missing or not finite."""
    if value is None:
        return "—"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return esc(value)
    # + 0.0 turns -0.0 into 0.0: "-0.00" would read as a (tiny) negative score.
    return f"{round(v, digits) + 0.0:.{digits}f}" if np.isfinite(v) else "—"


def interval(value, ci: Sequence[float] | None, digits: int = 2) -> str:
    """``0.53 [0.41, 0.62]`` — a score with its 95 % interval (the interval left out when unknown)."""
    if ci is None or len(ci) != 2 or any(c is None for c in ci):
        return num(value, digits)
    return f'{num(value, digits)} <span class="ci">[{num(ci[0], digits)}, {num(ci[1], digits)}]</span>'


def table(frame: pd.DataFrame, floatfmt: str = "{:.3f}", index: bool = False, cls: str = "t") -> str:
    """A pandas table as HTML (cells escaped, floats formatted, missing values as ``—``)."""
    formatters = {c: floatfmt.format for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    return frame.to_html(index=index, border=0, classes=cls, formatters=formatters, na_rep="—", escape=True)


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "t",
               row_classes: Sequence[str | None] | None = None) -> str:
    """A table from cells that are already HTML (for intervals and marks pandas would escape)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = ""
    for i, row in enumerate(rows):
        rc = row_classes[i] if row_classes else None
        attr = f' class="{rc}"' if rc else ""
        cells = "".join(f"<th>{c}</th>" if j == 0 else f"<td>{c}</td>" for j, c in enumerate(row))
        body += f"<tr{attr}>{cells}</tr>"
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


CSS = """
html,body{overflow-x:hidden} table.t{display:block;overflow-x:auto;max-width:100%}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #e07b00;padding-bottom:.2em;margin-top:2em}
nav a{margin-right:1em} code{background:#f3f3f3;padding:0 .2em}
table.t{border-collapse:collapse;margin:.6em 0;font-size:.9em} table.t th,table.t td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
table.t th{background:#f6f6f6} td.good{background:#e8f5e9} td.bad{background:#fdecea}
table.t tr.theirs th,table.t tr.theirs td{background:#f4f4f4;color:#666;font-style:italic}
table.t tr.diff th,table.t tr.diff td{font-weight:600;border-top:2px solid #999}
table.t tr.model th,table.t tr.model td{font-weight:600} table.main .ci{display:block}
.ci{color:#666;font-size:.9em;white-space:nowrap} .theirs{color:#666;font-style:italic;white-space:nowrap}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:.8em 1em;flex:1;min-width:220px}
.card.ref{background:#fafafa;color:#555}.big{font-size:1.8em;font-weight:600}
.cms{display:flex;gap:1.5em;flex-wrap:wrap}.cmt{font-size:.85em;color:#555}
img{max-width:100%} .lead{font-size:1.1em;background:#fff8ef;border-left:4px solid #e07b00;padding:.6em 1em}
.answer{font-size:1.15em;background:#eef6ff;border-left:4px solid #1f77b4;padding:.6em 1em}
.warnings{background:#fdecea;border:2px solid #c62828;border-radius:6px;padding:.5em 1em;margin:1em 0}
.warnings h2{border:none;margin:.2em 0;color:#c62828;font-size:1.2em} .warnings li{margin:.3em 0}
.note{color:#555;font-size:.92em} .warn{color:#b71c1c}
details{margin:.8em 0} summary{cursor:pointer;font-weight:600}
footer{margin-top:3em;color:#777;font-size:.85em}
"""
