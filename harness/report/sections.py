"""Sections of the report that come from more than the jobs' metrics (the samples themselves, human votes): each
producer returns a `Section`, and the report puts it in comparison.md, report.html and the W&B comparison run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
