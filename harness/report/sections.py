"""Sections of the report that come from more than the jobs' metrics (the samples themselves, human votes): each
producer returns a `Section`, and the report puts it in comparison.md, report.html and the W&B comparison run.

This is the report's one seam for such content. Producers are found, not imported: each is a Python entry point
in the group `harness.report_sections` (pyproject.toml `[project.entry-points."harness.report_sections"]`,
`name = "module:function"`), a function of the sweep's comparison returning a Section, or None when it has nothing
to say. The harness declares `samples` (harness.report.samples) and `human` (the arena's votes,
harness.arena.report); an installed package can add its own. So the report names no module that plugs into it:
the arena depends on the report, never the other way round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("harness")

GROUP = "harness.report_sections"  # the entry-point group of section producers
ORDER = ("tuning", "samples", "human")  # the report's order of its own sections; any other follows, by name


@dataclass
class Section:
    key: str  # short name: "samples", "human"
    title: str  # its heading in comparison.md and report.html
    markdown: str = ""  # the body under the heading in comparison.md ("" = not in the markdown)
    html: str = ""  # the body under the heading in report.html (self-contained: inline script and style only)
    tables: dict[str, tuple[list[str], list[list[Any]]]] = field(default_factory=dict)  # W&B: name -> columns, rows
    summary: dict[str, float] = field(default_factory=dict)  # W&B summary values of the comparison run

    def to_markdown(self) -> str:
        return f"\n## {self.title}\n\n{self.markdown.rstrip()}\n" if self.markdown else ""


Producer = Callable[[Any], "Section | None"]  # the sweep's comparison -> its section, or None


@dataclass
class JobFile:
    """What one complete job of a report group wrote in its folder under a name: `content` as `read` made it, or why
    there is none (`missing`: no such file; `error`: it did not read)."""

    job: Any
    name: str  # the job's folder name (or "<group> seed <seed>" for a job without one)
    content: Any = None
    missing: bool = False
    error: str | None = None


def job_files(group: Any, filename: str, read: Callable[[Path], Any]) -> list[JobFile]:
    """The file `filename` of each complete job of `group` (a report group), read by `read`; a read that raises
    OSError or ValueError is kept as the job's `error`. What sections built from per-job files (the samples, a
    suite's records) all read."""
    found = []
    for job in group.complete:
        folder = Path(job.dir) if job.dir is not None else None
        name = folder.name if folder is not None else f"{group.label} seed {job.seed}"
        path = folder / filename if folder is not None else None
        if path is None or not path.is_file():
            found.append(JobFile(job, name, missing=True))
            continue
        try:
            found.append(JobFile(job, name, content=read(path)))
        except (OSError, ValueError) as error:
            found.append(JobFile(job, name, error=str(error)))
    return found


def producers() -> list[tuple[str, Producer]]:
    """The registered section producers by name, in report order: ORDER first, then the others by name."""
    from importlib.metadata import entry_points

    found = {point.name: point for point in entry_points(group=GROUP)}
    if not found:
        log.warning("no report sections registered (entry points %s): is the harness pip-installed?", GROUP)
    rank = {name: index for index, name in enumerate(ORDER)}
    names = sorted(found, key=lambda name: (rank.get(name, len(ORDER)), name))
    return [(name, found[name].load()) for name in names]


def produce_sections(comparison: Any) -> list[Section]:
    """Every registered producer's section of this comparison, in report order; producers with nothing to say
    (None) are left out."""
    made = [producer(comparison) for _, producer in producers()]
    return [section for section in made if section is not None]
