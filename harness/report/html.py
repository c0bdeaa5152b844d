"""`report.html`: one self-contained page (inline CSS, figures as data: URIs), readable with no network, on a phone
(390 px) as on a desktop: text wraps, figures fit their column, and the page never scrolls sideways; a table or a row
of panels wider than the screen scrolls in its own box (tests/test_report_layout.py looks at both in Chromium)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from harness.report import curves
from harness.report.finished import INTRO, finished_lines
from harness.report.plots import TITLES
from harness.report.sections import Section
from harness.report.tables import (
    COST,
    Cell,
    Comparison,
    caption_notes,
    judge_checks,
    pairwise_caption,
    pairwise_tables,
    seeds_needed_line,
    status_lines,
    table_rows,
)

WIDE_FIGURE = 2.5  # a figure wider than this many times its height (a row of panels) scrolls sideways on a phone
_STYLE = """
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1d1d1f; line-height: 1.45; overflow-wrap: anywhere; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.meta { color: #555; font-size: .9rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .88rem; overflow-wrap: normal; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f4f4f6; }
td.best { font-weight: 700; background: #eef7ee; }
h3 { font-size: 1rem; margin-bottom: .2rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; box-sizing: border-box; }
.figure-scroll { overflow-x: auto; }
figcaption { color: #555; font-size: .85rem; }
.problems li { color: #a40000; }
/* A table wider than the text takes the screen's width beside it (centred under the text, never past the screen's
   edges); wider still, it scrolls sideways in its own box, never the page, and never loses a column. The method's
   column stays in view while the numbers scroll; a shadow at the right edge says there is more. */
.table-scroll { overflow-x: auto; margin: .8rem 0; width: max-content; min-width: 100%;
  max-width: calc(100vw - 3rem); position: relative; left: 50%; transform: translateX(-50%);
  background: linear-gradient(to left, #fff 40%, rgba(255, 255, 255, 0)) right / 2rem 100% no-repeat local,
              radial-gradient(farthest-side at 100% 50%, rgba(0, 0, 0, .2), transparent) right / .7rem 100% no-repeat
              scroll; }
.table-scroll > table { margin: 0; }
.table-scroll th:first-child, .table-scroll td:first-child { position: sticky; left: 0; background: #fff; }
.table-scroll thead th:first-child { background: #f4f4f6; }
/* a section's own wide content (another producer's table) scrolls inside the section, not the page */
.section-body { overflow-x: auto; }
@media (max-width: 40rem) {
  body { margin: 1rem auto; padding: 0 .75rem; }
  h1 { font-size: 1.35rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
  table { font-size: .82rem; } th, td { padding: .25rem .45rem; }
  /* a row of panels shrunk to a phone's width is unreadable: full height instead, swiped sideways in its box */
  figure.wide img { max-width: none; width: auto; height: 16rem; }
}
"""


def _td(cell: Cell) -> str:
    attributes = ' class="best"' if cell.best else ""
    return f"<td{attributes}>{html.escape(cell.text)}</td>"


def _table(css_class: str, header: list[str], rows: list[list[Cell]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(map(_td, row)) + "</tr>" for row in rows)
    table = f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="table-scroll">{table}</div>'


def _png_size(png: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels from a PNG's header; None when `png` is not one."""
    if len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        return None
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _figure(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    title = html.escape(TITLES.get(name, name))
    size = _png_size(png)
    wide = ' class="wide"' if size is not None and size[0] > WIDE_FIGURE * size[1] else ""
    return (
        f'<figure id="{name}"{wide}><div class="figure-scroll">'
        f'<img class="plot" alt="{title}" src="data:image/png;base64,{data}"></div>'
        f"<figcaption>{title} (also {name}.png beside this page)</figcaption></figure>"
    )


def _equal_kl(result: Any) -> list[str]:
    """The "At equal KL" section: each method at each KL budget, and who leads over which range of KL."""
    from harness.report import frontier

    parts = ["<h2>At equal KL</h2>"]
    if result.budgets:
        header, rows = frontier.equal_kl_rows(result)
        parts += [
            _table("equal-kl", header, [[Cell(text, best) for text, best in row] for row in rows]),
            f'<p class="meta">{html.escape(frontier.equal_kl_caption(result))}</p>',
        ]
    else:
        parts.append(f'<p class="meta">{html.escape(frontier.no_budget_line(result))}</p>')
    if lines := frontier.dominance_lines(result):
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        intro = html.escape(frontier.dominance_intro(result))
        parts += [f'<p class="meta">{intro}</p>', f'<ul class="dominance">{items}</ul>']
    return parts


def _metric_curves(comparison: Comparison) -> list[str]:
    """A suite's metric family at the x values it lists (pass@k at k = 1, 4, 16, 64; harness.report.curves)."""
    found = curves.tables(comparison)
    parts = []
    for title, header, rows in found:
        cells = [[Cell(text, best) for text, best in row] for row in rows]
        parts += [f"<h2>{html.escape(title)}</h2>", _table("metric-curve", header, cells)]
    if found:
        parts.append(f'<p class="meta">{html.escape(curves.caption(comparison))}</p>')
    return parts


def _finished(comparison: Comparison) -> list[str]:
    """The "Training finished?" section: which methods were still improving when they stopped (none when no job
    measured it)."""
    if not (lines := finished_lines(comparison)):
        return []
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    intro = f'<p class="meta">{html.escape(INTRO)}</p>'
    return ["<h2>Training finished?</h2>", intro, f'<ul class="finished">{items}</ul>']


def render(comparison: Comparison, figures: Mapping[str, bytes], sections: Sequence[Section] = ()) -> str:
    sweep = comparison.sweep
    counts = {status: len(sweep.by_status(status)) for status in ("complete", "failed", "missing")}
    header, rows = table_rows(comparison, comparison.headline, with_diff=True)
    cost_header, cost_rows = table_rows(comparison, COST, intervals=False)
    generation = sweep.config.get("generation", {})
    sampling = ", ".join(f"{key}={value}" for key, value in generation.items()) or "not recorded"
    versions = next((job.result.versions for job in sweep.jobs if job.result is not None), {})
    stack = ", ".join(f"{name} {version}" for name, version in versions.items())
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(sweep.experiment)}: alignment comparison</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(sweep.experiment)}: side-by-side comparison</h1>",
        f'<p class="meta">{html.escape(str(sweep.root))} · jobs: {counts["complete"]} complete, '
        f"{counts['failed']} failed, {counts['missing']} missing · evaluation sampling: {html.escape(sampling)}</p>",
        "<h2>Comparison</h2>",
        _table("comparison", header, rows),
        '<p class="meta">Mean over seeds [95% t-interval]; best mean highlighted. '
        + html.escape(" ".join(caption_notes(comparison)))
        + "</p>",
    ]
    if needed := seeds_needed_line(comparison):
        parts.append(f'<p class="meta seeds-needed">{html.escape(needed)}</p>')
    if (checks := judge_checks(comparison)) and comparison.quality is not None:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in checks)
        heading = f"<h2>Judges against {html.escape(comparison.quality.label)}</h2>"
        parts += [heading, f'<ul class="judges">{items}</ul>']
    parts += _finished(comparison)
    if tables := pairwise_tables(comparison):
        parts += ["<h2>Pairwise differences</h2>", f'<p class="meta">{html.escape(pairwise_caption(comparison))}</p>']
        for title, pair_header, pair_rows in tables:
            parts += [f"<h3>{html.escape(title)}</h3>", _table("pairwise", pair_header, pair_rows)]
    parts += _metric_curves(comparison)
    if comparison.at_equal_kl is not None:
        parts += _equal_kl(comparison.at_equal_kl)
    if problems := status_lines(sweep.jobs):
        items = "".join(f"<li>{html.escape(line.removeprefix('- ').replace('**', ''))}</li>" for line in problems)
        parts += ["<h2>Jobs without a result</h2>", f'<ul class="problems">{items}</ul>']
    for section in sections:
        if section.html:
            heading = f'<h2 id="{section.key}">{html.escape(section.title)}</h2>'
            parts += [heading, f'<div class="section-body">{section.html}</div>']
    for name, png in figures.items():
        parts += [f"<h2>{html.escape(TITLES.get(name, name))}</h2>", _figure(name, png)]
    parts += [
        "<h2>Cost</h2>",
        _table("cost", cost_header, cost_rows),
        '<p class="meta">Mean per job. train s: the algorithm\'s own stage; pipeline s: every stage it stands on, '
        "as long as each took to build (shared stages are built once per sweep and reused).</p>",
        f'<p class="meta">Stack: {html.escape(stack)}</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
