"""The side-by-side comparison of a sweep: `build_report(sweep_dir)` writes comparison.csv, comparison.md,
report.html and the figures as PNG into the sweep directory, reading nothing but the jobs' folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.io import atomic_write_bytes, atomic_write_text
from harness.report.aggregate import Sweep, load_sweep
from harness.report.tables import Comparison, compare, to_csv, to_markdown

CSV_FILE, MARKDOWN_FILE, HTML_FILE = "comparison.csv", "comparison.md", "report.html"


@dataclass
class Report:
    comparison: Comparison
    markdown: str
    csv: str
    files: dict[str, Path]  # what was written: csv, markdown, html, and one PNG per figure

    @property
    def sweep(self) -> Sweep:
        return self.comparison.sweep

    @property
    def html(self) -> Path:
        return self.files["html"]

    @property
    def failed_or_missing(self) -> int:
        return sum(job.status != "complete" for job in self.sweep.jobs)


def build_report(sweep_dir: Path | str, baseline: str | None = None) -> Report:
    """Aggregate every job under `sweep_dir` and write the comparison files there. `baseline`: the group the
    others are compared with, paired by seed (default: the one recorded with the sweep)."""
    from harness.report import html, plots

    root = Path(sweep_dir)
    comparison = compare(load_sweep(root), baseline=baseline)
    csv_text, markdown = to_csv(comparison), to_markdown(comparison)
    figures = plots.render_all(comparison)
    files = {"csv": root / CSV_FILE, "markdown": root / MARKDOWN_FILE, "html": root / HTML_FILE}
    atomic_write_text(files["csv"], csv_text)
    atomic_write_text(files["markdown"], markdown)
    for name, png in figures.items():
        files[name] = root / f"{name}.png"
        atomic_write_bytes(files[name], png)
    atomic_write_text(files["html"], html.render(comparison, figures))
    return Report(comparison, markdown, csv_text, files)


__all__ = ["Report", "build_report"]
