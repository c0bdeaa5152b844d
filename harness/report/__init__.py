"""The side-by-side comparison of a sweep: `build_report(sweep_dir)` writes comparison.csv, comparison.md,
equal_kl.csv (each method at fixed KL budgets), report.html and the figures as PNG into the sweep directory,
reading nothing but the jobs' folders."""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.io import atomic_write_bytes, atomic_write_text
from harness.report.aggregate import Sweep, load_sweep, parse_kl_budgets
from harness.report.sections import Section, produce_sections
from harness.report.tables import (
    OPTIMISED_MARK,
    OPTIMISED_NOTE,
    Comparison,
    compare,
    headline_table,
    to_csv,
    to_markdown,
)

if TYPE_CHECKING:
    from harness.report.frontier import Lead

CSV_FILE, MARKDOWN_FILE, HTML_FILE = "comparison.csv", "comparison.md", "report.html"


@dataclass
class Report:
    comparison: Comparison
    markdown: str
    csv: str
    files: dict[str, Path]  # what was written: csv, markdown, html, equal_kl, and one PNG per figure
    equal_kl_csv: str = ""  # each method at each KL budget (harness.report.frontier), as equal_kl.csv
    sections: list[Section] | None = None  # what the samples and human votes add (harness.report.sections)

    @property
    def sweep(self) -> Sweep:
        return self.comparison.sweep

    @property
    def html(self) -> Path:
        return self.files["html"]

    @property
    def failed_or_missing(self) -> int:
        return sum(job.status != "complete" for job in self.sweep.jobs)


def build_report(sweep_dir: Path | str, baseline: str | None = None, kl_budgets: list[float] | None = None) -> Report:
    """Aggregate every job under `sweep_dir` and write the comparison files there. `baseline`: the group the
    others are compared with, paired by seed (default: the one recorded with the sweep). `kl_budgets`: the KLs
    (nats) the methods are compared at (default: those recorded with the sweep, else the report's defaults)."""
    from harness.report import fits, frontier, html, plots

    root = Path(sweep_dir)
    comparison = compare(load_sweep(root), baseline=baseline, kl_budgets=parse_kl_budgets(kl_budgets))
    csv_text, markdown = to_csv(comparison), to_markdown(comparison)
    equal_kl_text = frontier.to_csv(comparison.at_equal_kl)
    figures = plots.render_all(comparison)
    fitted = fits.overoptimisation(comparison, comparison.sweep.fits or {})
    if fitted:  # the sweep asked for Gao et al.'s fits (experiment=gao)
        label = comparison.at_equal_kl.reward.label
        markdown += "\n" + fits.to_markdown(fitted, label)
        if (png := fits.figure(fitted, label)) is not None:
            figures["overoptimisation"] = png
    sections = extra_sections(comparison)
    markdown += "".join(section.to_markdown() for section in sections)
    files = {
        "csv": root / CSV_FILE,
        "markdown": root / MARKDOWN_FILE,
        "html": root / HTML_FILE,
        "equal_kl": root / frontier.EQUAL_KL_FILE,
    }
    atomic_write_text(files["csv"], csv_text)
    atomic_write_text(files["markdown"], markdown)
    atomic_write_text(files["equal_kl"], equal_kl_text)
    for name, png in figures.items():
        files[name] = root / f"{name}.png"
        atomic_write_bytes(files[name], png)
    atomic_write_text(files["html"], html.render(comparison, figures, sections))
    return Report(comparison, markdown, csv_text, files, equal_kl_text, sections)


def extra_sections(comparison: Comparison) -> list[Section]:
    """The sections beyond the metrics (the samples, the human votes), in report order: from the producers
    registered with the report's seam (harness.report.sections)."""
    return produce_sections(comparison)


VERBOSE_ENV = "HARNESS_VERBOSE"  # 1: print all of comparison.md at the end, as --verbose does


def wants_verbose(asked: bool = False) -> bool:
    """Whether to print all of comparison.md: asked for (`--verbose`, the callback's `verbose`) or HARNESS_VERBOSE=1."""
    return bool(asked) or os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


PROSE_WIDTH = 110  # the prose lines of the printed summary wrap here; the table is as wide as its cells
EQUAL_KL_LINES = 2  # who leads at equal KL, in at most this many lines (the section has every range in full)


def terminal_text(report: Report, verbose: bool = False, verbose_hint: str = "--verbose prints it all") -> str:
    """What a sweep, or `harness-report`, prints at its end. `verbose`: all of comparison.md, then the report's path.
    Otherwise what fits a screen: the headline table (comparison.md's first), who leads at equal KL, and where
    comparison.md and report.html are, naming the sections left out and saying how to print them (`verbose_hint`)."""
    html = f"report: {report.html.resolve()}"
    if verbose:
        return f"{report.markdown}\n{html}"
    comparison = report.comparison
    table = headline_table(comparison)
    notes = ["Mean over seeds [95% t-interval]; best mean in bold."]
    if OPTIMISED_MARK in table:
        notes.append(OPTIMISED_NOTE)
    lines = [f"## {comparison.sweep.experiment}: side-by-side comparison", "", table, "", " ".join(notes)]
    lines += equal_kl_leaders(comparison)
    omitted = re.findall(r"^#{2,3} (.+)$", report.markdown, flags=re.MULTILINE)[1:]  # the headings after the title
    rest = f"also in it: {', '.join(omitted)}; {verbose_hint}" if omitted else ""
    lines += ["", f"comparison.md: {report.files['markdown'].resolve()}"]
    lines += textwrap.wrap(rest, PROSE_WIDTH, initial_indent="  ", subsequent_indent="  ")
    return "\n".join([*lines, html])


def equal_kl_leaders(comparison: Comparison) -> list[str]:
    """The "At equal KL" section's who-leads-where in a line or two (none without it): each range of KL with its
    leader, as many ranges as fit, then how many more the section has."""
    from harness.report.frontier import nats

    result = comparison.at_equal_kl
    if result is None or not result.leads:
        return []
    ranges = [f"{_who_leads(lead)} from {nats(lead.start)} to {nats(lead.end)} nats" for lead in result.leads]
    opening = f"At equal {result.kl.label}, the highest {result.reward.label}: "
    for shown in range(len(ranges), 0, -1):
        more = len(ranges) - shown
        text = opening + "; ".join(ranges[:shown]) + (f"; {more} more range(s) in comparison.md" if more else ".")
        wrapped = textwrap.wrap(text, PROSE_WIDTH, subsequent_indent="  ")
        if len(wrapped) <= EQUAL_KL_LINES or shown == 1:
            return wrapped
    return []


def _who_leads(lead: Lead) -> str:
    """One range's leader as the section says it (frontier.dominance_lines), in a few words."""
    others = ", ".join(lead.runners_up)
    if lead.state == "dominates":
        return f"{lead.method} dominates"
    if lead.state == "within noise" and len(lead.leaders) > 1:
        *first, last = lead.methods
        return f"{', '.join(first)} and {last} within noise"
    if lead.state == "within noise":
        return f"{lead.method} leads within noise of {others}"
    if lead.state == "no interval":
        return f"{lead.method} leads (one seed: noise unknown)"
    return f"{lead.method} alone"


__all__ = ["Report", "Section", "build_report", "terminal_text", "wants_verbose"]
