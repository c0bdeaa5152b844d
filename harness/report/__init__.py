"""The side-by-side comparison of a sweep: `build_report(sweep_dir)` writes comparison.csv, comparison.md,
equal_kl.csv (each method at fixed KL budgets), report.html and the figures as PNG into the sweep directory,
reading nothing but the jobs' folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.io import atomic_write_bytes, atomic_write_text
from harness.report.aggregate import Sweep, load_sweep, parse_kl_budgets
from harness.report.sections import Section, produce_sections
from harness.report.tables import Comparison, compare, to_csv, to_markdown

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


__all__ = ["Report", "Section", "build_report"]
