"""The report's "Reach beyond the base model" section (entry point `reach` of harness.report_sections): which problems
each method solves that the base model never does, and the reverse (Yue et al. 2025, "Does reinforcement learning
really incentivize reasoning capacity in LLMs beyond the base model?", the problem coverage behind their pass@k
curves).

It reads each job's `pass_at_k.jsonl` (eval=pass_at_k: per problem its split, prompt, right samples c of n) and, per
split and method, against the sweep's `base` group (algorithm=base):
- solved: share of the problems the method solved at least once in its n samples;
- beyond base: share it solved that the base never solved (in any of the base's jobs: the union over its seeds);
- lost reach: share the base solved that the method never did.
Shares of the split's problems, mean over the method's seeds, so solved = base solved + beyond base - lost reach for
each seed. "Never in n" depends on n: a problem the base solves with per-sample probability below 1/n most likely
shows no right sample in n and counts as beyond the base, so the section states n for every method.

Sweeps without a base group, or whose jobs wrote no pass_at_k.jsonl, get no section. Jobs without the file are left
out with a note; jobs that asked different problems are compared on the problems all of them have, with a note.
"""

from __future__ import annotations

import html
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.api import Section, job_files
from plugins.evals.pass_at_k import RECORDS_FILE  # what eval=pass_at_k writes into each job folder

KEY, TITLE = "reach", "Reach beyond the base model"
BASE = "base"  # the algorithm whose reach the others are measured against (conf/algorithm/base.yaml)
FIRST_SPLIT = "eval"  # pass_at_k's evaluation problems; its extra splits (hard) follow in the order the base has them
CITATION = (
    'Yue et al. 2025, "Does reinforcement learning really incentivize reasoning capacity in LLMs beyond the base '
    'model?"'
)
COLUMNS = ["split", "method", "n", "seeds", "problems", "solved", "beyond_base", "lost_reach"]  # the W&B table

Problem = tuple[str, int]  # prompt text and its occurrence in the split (a prompt asked twice is two problems)


@dataclass
class JobRecords:
    """One job's pass_at_k.jsonl: split -> problem -> (right samples, samples)."""

    method: str  # the report's group label
    seed: str
    name: str  # the job folder's name, for the notes
    splits: dict[str, dict[Problem, tuple[int, int]]]

    def solved(self, split: str, problems: Iterable[Problem]) -> set[Problem]:
        counts = self.splits[split]
        return {problem for problem in problems if counts[problem][0] > 0}

    def samples(self, split: str) -> set[int]:
        return {n for _, n in self.splits[split].values()}


@dataclass
class Reach:
    """One method on one split: per seed (its jobs, in order) the shares of the split's problems."""

    method: str
    seeds: list[str]
    n: set[int]
    solved: list[float]
    beyond_base: list[float] = field(default_factory=list)
    lost_reach: list[float] = field(default_factory=list)


@dataclass
class SplitReach:
    split: str
    problems: int
    base: Reach  # solved: one value, the union over the base's jobs
    methods: list[Reach]


# -- reading --------------------------------------------------------------------------------------------------------
def prompt_text(prompt: Any) -> str:
    """A prompt as text: itself, or the JSON of a structured one (a list of chat messages)."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, sort_keys=True)


def read_records(path: Path) -> dict[str, dict[Problem, tuple[int, int]]]:
    """A pass_at_k.jsonl as split -> problem -> (right, n); ValueError naming the first line that is not a record."""
    splits: dict[str, dict[Problem, tuple[int, int]]] = {}
    seen: dict[tuple[str, str], int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"line {number} is not JSON ({error.msg})") from None
        right, n = (row.get("right"), row.get("n")) if isinstance(row, dict) else (None, None)
        if not (isinstance(right, int) and isinstance(n, int) and 0 <= right <= n and n >= 1 and "prompt" in row):
            raise ValueError(f'line {number}: expected {{"split", "prompt", "right": c, "n": n}} with 0 <= c <= n')
        split, text = str(row.get("split", FIRST_SPLIT)), prompt_text(row["prompt"])
        occurrence = seen.get((split, text), 0)
        seen[(split, text)] = occurrence + 1
        splits.setdefault(split, {})[(text, occurrence)] = (right, n)
    return splits


def group_records(group: Any) -> tuple[list[JobRecords], list[str]]:
    """The pass_at_k.jsonl of each complete job of a report group, and a note for each job left out."""
    jobs: list[JobRecords] = []
    notes: list[str] = []
    for found in job_files(group, RECORDS_FILE, read_records):
        who = f"{found.name} ({group.label} seed {found.job.seed})"
        if found.missing:
            notes.append(f"{who}: no {RECORDS_FILE}, left out")
        elif found.error is not None:
            notes.append(f"{who}: {RECORDS_FILE} left out: {found.error}")
        else:
            jobs.append(JobRecords(group.label, str(found.job.seed), found.name, found.content))
    return jobs, notes


# -- measuring ------------------------------------------------------------------------------------------------------
def measure(
    split: str, base_jobs: Sequence[JobRecords], methods: Sequence[Sequence[JobRecords]]
) -> tuple[SplitReach | None, list[str]]:
    """Each method's reach on `split` against the base's, over the problems every job of the split has."""
    notes = [
        f"{job.name} ({job.method} seed {job.seed}): no {split} problems in its {RECORDS_FILE}, left out of {split}"
        for job in [*base_jobs, *(job for method in methods for job in method)]
        if split not in job.splits
    ]
    base_jobs = [job for job in base_jobs if split in job.splits]
    if not base_jobs:  # reach_section asks only for the splits some base job has
        return None, notes
    jobs = [*base_jobs, *(job for method in methods for job in method if split in job.splits)]
    problems = set.intersection(*(set(job.splits[split]) for job in jobs))
    if short := [job for job in jobs if len(job.splits[split]) > len(problems)]:
        which = ", ".join(f"{job.method} seed {job.seed} ({len(job.splits[split])})" for job in short)
        notes.append(
            f"{split}: the jobs' problems differ ({which} problems): the shares are over the {len(problems)} "
            "problems every job has."
        )
    if not problems:
        return None, notes
    count = len(problems)
    base_solved = set().union(*(job.solved(split, problems) for job in base_jobs))
    base = Reach(base_jobs[0].method, [job.seed for job in base_jobs], _samples(base_jobs, split),
                 [len(base_solved) / count])  # fmt: skip
    found: list[Reach] = []
    for method_jobs in methods:
        method_jobs = [job for job in method_jobs if split in job.splits]
        if not method_jobs:
            continue
        reach = Reach(method_jobs[0].method, [job.seed for job in method_jobs], _samples(method_jobs, split), [])
        for job in method_jobs:
            solved = job.solved(split, problems)
            reach.solved.append(len(solved) / count)
            reach.beyond_base.append(len(solved - base_solved) / count)
            reach.lost_reach.append(len(base_solved - solved) / count)
        found.append(reach)
    if len(base_jobs) > 1:
        notes.append(_base_union_note(split, base_jobs, problems))
    sizes = {reach.method: reach.n for reach in [base, *found]}
    if len(set().union(*sizes.values())) > 1:
        listed = "; ".join(f"{method} {_n_text(n)}" for method, n in sizes.items())
        notes.append(
            f'{split}: n differs between jobs ({listed}): "never in n" is a different bar for each, and a method '
            "with more samples reaches more problems by sampling alone."
        )
    return SplitReach(split, count, base, found), notes


def _samples(jobs: Sequence[JobRecords], split: str) -> set[int]:
    return set().union(*(job.samples(split) for job in jobs))


def _base_union_note(split: str, base_jobs: Sequence[JobRecords], problems: set[Problem]) -> str:
    counts = [tuple(job.splits[split][problem][0] for problem in sorted(problems)) for job in base_jobs]
    if len(set(counts)) == 1:
        return (f"{split}: the base's {len(base_jobs)} jobs drew the same right counts on every problem (one draw); "
                "its reach is theirs.")  # fmt: skip
    total = sum(max(job.samples(split)) for job in base_jobs)
    return (
        f"{split}: the base's {len(base_jobs)} jobs drew different samples; its reach is their union, up to {total} "
        'samples per problem, a higher bar for "beyond base" than one job\'s n.'
    )


def pair_with_bases(groups: Sequence[Any]) -> list[tuple[Any, list[Any]]]:
    """Each base group with the other groups measured against it: one base group takes every method; with several
    (a sweep that varies a setting beside the algorithm), a method goes to the base sharing most of its settings."""
    bases = [group for group in groups if group.algorithm == BASE]
    if not bases:
        return []
    paired: dict[str, list[Any]] = {base.label: [] for base in bases}
    for group in groups:
        if group.algorithm == BASE:
            continue
        shared = [sum(base.params.get(key) == value for key, value in group.params.items()) for base in bases]
        paired[bases[shared.index(max(shared))].label].append(group)
    return [(base, paired[base.label]) for base in bases]


# -- the section ----------------------------------------------------------------------------------------------------
def reach_section(comparison: Any) -> Section | None:
    """The section for a sweep with a base group whose jobs wrote pass_at_k.jsonl; None for any other sweep."""
    pairs = pair_with_bases(comparison.groups)
    if not pairs:
        return None
    records: dict[str, list[JobRecords]] = {}
    notes: list[str] = []
    for group in comparison.groups:
        records[group.label], missing = group_records(group)
        notes += missing
    if not any(records.values()):
        return None  # no job ran eval=pass_at_k
    if len(pairs) > 1:
        notes.append("Several base groups: " + "; ".join(
            f"{', '.join(group.label for group in methods) or 'no method'} against {base.label}"
            for base, methods in pairs) + ".")  # fmt: skip
    results: list[tuple[str, SplitReach]] = []
    for base, methods in pairs:
        base_jobs = records[base.label]
        if not base_jobs:
            notes.append(f"{base.label}: no job wrote {RECORDS_FILE}; reach beyond it cannot be measured.")
            continue
        for split in split_order(base_jobs):
            found, split_notes = measure(split, base_jobs, [records[group.label] for group in methods])
            notes += split_notes
            if found is not None:
                results.append((base.label, found))
    against = len(pairs) > 1
    return Section(
        key=KEY,
        title=TITLE,
        markdown=to_markdown(results, notes, against),
        html=to_html(results, notes, against),
        tables={KEY: (COLUMNS, wandb_rows(results))},
        summary=summary(results),
    )


def split_order(jobs: Sequence[JobRecords]) -> list[str]:
    seen = list(dict.fromkeys(split for job in jobs for split in job.splits))
    return sorted(seen, key=lambda split: split != FIRST_SPLIT)


def intro(results: Sequence[tuple[str, SplitReach]]) -> list[str]:
    sizes = sorted({n for _, found in results for reach in (found.base, *found.methods) for n in reach.n})
    miss = ", ".join(f"{(1 - 1 / n) ** n:.2f} at n = {n}" for n in sizes)  # (1 - 1/n)^n -> 1/e = 0.37
    return [
        f"Which problems each method solves that the base model never does, and the reverse ({CITATION}), from each "
        f"job's {RECORDS_FILE} (eval=pass_at_k): a problem counts as solved when at least one of the job's n samples "
        "is right.",
        "Solved: share of the split's problems solved at least once in n. Beyond base: solved, and never by the base "
        "(in any of its jobs). Lost reach: solved by the base, never by the method. Mean over the method's seeds, "
        "in parentheses the lowest and highest seed's share; for each seed, solved = base solved + beyond base − "
        "lost reach.",
        '"Never in n" depends on n: the base misses a problem it solves with per-sample probability p in all n '
        f"samples with chance (1 − p)^n ({miss} at p = 1/n), so a problem it solves only rarely, below about 1/n, "
        "can count as beyond it; more samples of the base move such problems to reached by both.",
    ]


def _share(values: Sequence[float]) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1 or min(values) == max(values):
        return f"{mean:.3f}"
    return f"{mean:.3f} ({min(values):.3f}, {max(values):.3f})"


def _n_text(n: set[int]) -> str:
    return ", ".join(map(str, sorted(n)))


def _heading(base_label: str, found: SplitReach, against: bool) -> str:
    n = _n_text(set().union(*(reach.n for reach in (found.base, *found.methods))))
    versus = f", against {base_label}" if against else ""
    return f"{found.split}: {found.problems} problems, n = {n}{versus}"


HEADER = ["method", "n", "seeds", "solved", "beyond base", "lost reach"]


def _rows(found: SplitReach) -> list[list[str]]:
    base = found.base
    rows = [[base.method, _n_text(base.n), str(len(base.seeds)), f"{base.solved[0]:.3f} (union)", "–", "–"]]
    for reach in found.methods:
        rows.append([reach.method, _n_text(reach.n), str(len(reach.seeds)), _share(reach.solved),
                     _share(reach.beyond_base), _share(reach.lost_reach)])  # fmt: skip
    return rows


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(results: Sequence[tuple[str, SplitReach]], notes: Sequence[str], against: bool) -> str:
    lines = [" ".join(intro(results)) if results else f"No split to compare ({CITATION})."]
    for base_label, found in results:
        lines += ["", f"**{_markdown_cell(_heading(base_label, found, against))}**", ""]
        lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(map(_markdown_cell, row)) + " |" for row in _rows(found)]
    if notes:
        lines += ["", *(f"- {_markdown_cell(note)}" for note in notes)]
    return "\n".join(lines) + "\n"


def to_html(results: Sequence[tuple[str, SplitReach]], notes: Sequence[str], against: bool) -> str:
    parts = [f'<p class="meta">{html.escape(line)}</p>' for line in (intro(results) if results else [])]
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in HEADER)
    for base_label, found in results:
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in _rows(found)
        )
        table = f'<table class="reach"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        parts += [f"<h3>{html.escape(_heading(base_label, found, against))}</h3>",
                  f'<div class="table-scroll">{table}</div>']  # fmt: skip
    if notes:
        parts.append('<ul class="meta">' + "".join(f"<li>{html.escape(note)}</li>" for note in notes) + "</ul>")
    return "\n".join(parts)


def wandb_rows(results: Sequence[tuple[str, SplitReach]]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for _, found in results:
        base = found.base
        rows.append([found.split, base.method, _n_text(base.n), len(base.seeds), found.problems, base.solved[0],
                     None, None])  # fmt: skip
        for reach in found.methods:
            rows.append([found.split, reach.method, _n_text(reach.n), len(reach.seeds), found.problems,
                         statistics.fmean(reach.solved), statistics.fmean(reach.beyond_base),
                         statistics.fmean(reach.lost_reach)])  # fmt: skip
    return rows


def summary(results: Sequence[tuple[str, SplitReach]]) -> dict[str, float]:
    values: dict[str, float] = {}
    for _, found in results:
        base = found.base
        values[f"{KEY}/{base.method}/{found.split}/solved"] = base.solved[0]
        values[f"{KEY}/{base.method}/{found.split}/problems"] = float(found.problems)
        if len(base.n) == 1:
            values[f"{KEY}/{base.method}/{found.split}/n"] = float(next(iter(base.n)))
        for reach in found.methods:
            prefix = f"{KEY}/{reach.method}/{found.split}"
            values[f"{prefix}/solved"] = statistics.fmean(reach.solved)
            values[f"{prefix}/beyond_base"] = statistics.fmean(reach.beyond_base)
            values[f"{prefix}/lost_reach"] = statistics.fmean(reach.lost_reach)
            values[f"{prefix}/problems"] = float(found.problems)
            if len(reach.n) == 1:
                values[f"{prefix}/n"] = float(next(iter(reach.n)))
    return values
