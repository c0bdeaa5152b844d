"""What a person reads in the terminal when a sweep ends, or after `harness-report DIR`: the headline table, who leads
at equal KL and where comparison.md and report.html are, on one screen; all of comparison.md with `--verbose`
(HARNESS_VERBOSE=1, the report callback's `verbose`), and always in the file."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from smoke_sweep import shared_smoke_sweep
from sweeps import make_job, write_multirun

from harness.report import build_report, equal_kl_leaders, terminal_text
from harness.report.cli import main as harness_report
from harness.report.frontier import Lead

SCREEN = 40  # lines: what the end of `make demo` (six methods over three seeds) may print
DEMO = {  # gold reward and KL of the README's demo table
    "base": (0.456, 0.0),
    "sft": (0.666, 1.01),
    "dpo": (0.724, 0.58),
    "ppo": (0.881, 1.99),
    "grpo": (0.812, 0.97),
    "best_of_n": (0.875, 1.84),
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return shared_smoke_sweep(tmp_path_factory)


def first_table(markdown: str) -> str:
    """comparison.md's headline table: its first block of `|` lines."""
    return re.search(r"^\|.*(?:\n\|.*)*", markdown, flags=re.MULTILINE).group(0)


def test_a_sweep_ends_with_the_headline_table_and_the_paths_not_the_whole_comparison(sweep) -> None:
    """The shared smoke sweep (base, sft, dpo; one seed) as it printed its end: the table comparison.md opens with,
    where the files are, and nothing of the sections below the table, which comparison.md keeps."""
    printed = sweep.stdout[sweep.stdout.index("## smoke: side-by-side comparison") :].splitlines()
    full = (sweep.dir / "comparison.md").read_text()
    assert len(printed) <= 20 < len(full.splitlines()), "\n".join(printed)
    text = "\n".join(printed)
    assert first_table(full) in text and "| algorithm | seeds | gold reward |" in text
    assert f"comparison.md: {(sweep.dir / 'comparison.md').resolve()}" in printed
    assert printed[-1] == f"report: {(sweep.dir / 'report.html').resolve()}"
    headings = re.findall(r"^### (.+)$", full, flags=re.MULTILINE)
    assert "Cost (mean per job)" in headings and "At equal KL" in headings, headings
    words = " ".join(text.split())  # the names of what was left out wrap as words do
    for heading in headings:  # each left out, and named where the file is
        assert f"### {heading}" not in text and heading in words
    assert "`harness-report --verbose` on this folder prints it all" in words
    assert "| base | 1 | 0 |" not in text  # the cost table's first row


def test_harness_report_verbose_prints_all_of_comparison_md(sweep, tmp_path: Path, capsys, monkeypatch) -> None:
    folder = sweep.copy(tmp_path)
    monkeypatch.delenv("HARNESS_VERBOSE", raising=False)
    harness_report([str(folder), "--verbose"])
    markdown = (folder / "comparison.md").read_text()
    assert capsys.readouterr().out == f"{markdown}\nreport: {(folder / 'report.html').resolve()}\n"
    report = build_report(folder)
    assert report.markdown == markdown == (sweep.dir / "comparison.md").read_text()  # the file: all of it, as built
    short = terminal_text(report)
    assert len(short.splitlines()) < len(markdown.splitlines()) and "--verbose prints it all" in " ".join(short.split())
    monkeypatch.setenv("HARNESS_VERBOSE", "1")  # what the report callback's `verbose` does too
    harness_report([str(folder)])
    assert capsys.readouterr().out == f"{markdown}\nreport: {(folder / 'report.html').resolve()}\n"


def test_the_demo_fits_a_screen(tmp_path: Path) -> None:
    """Six methods over three seeds, as `make demo` runs them (hand-made results with the README's means)."""
    write_multirun(tmp_path, {"algorithm": ",".join(DEMO), "seed": "0,1,2"})
    for number, (algorithm, seed) in enumerate((a, s) for a in DEMO for s in range(3)):
        reward, kl = DEMO[algorithm]
        metrics = {
            "eval/gold/reward": reward + 0.02 * (seed - 1),
            "eval/gold/grammatical": 0.9 - 0.01 * seed,
            "eval/kl/seq_kl": kl * (1 + 0.1 * (seed - 1)),
            "eval/diversity/distinct_2": 0.3,
            "eval/win_rate/rate": 0.5 + reward - DEMO["sft"][0],
        }
        make_job(tmp_path, number, algorithm, seed, metrics)
    report = build_report(tmp_path)
    printed = terminal_text(report).splitlines()
    assert len(printed) <= SCREEN < len(report.markdown.splitlines()), "\n".join(printed)
    assert first_table(report.markdown) in "\n".join(printed)
    assert any(line.startswith("At equal KL (nats), the highest gold reward: ") for line in printed), printed
    assert terminal_text(report, verbose=True) == f"{report.markdown}\nreport: {report.html.resolve()}"


def test_who_leads_at_equal_kl_is_a_line_or_two_however_many_ranges() -> None:
    """Each of the section's sentences (frontier.dominance_lines) in a few words; past two lines, the ranges left
    out are counted."""
    phrases = {
        Lead("sft", 0.0, 0.31, "alone"): "sft alone from 0 to 0.31 nats",
        Lead("dpo", 0.31, 0.9, "dominates", runners_up=("grpo",)): "dpo dominates from 0.31 to 0.9 nats",
        Lead("grpo", 0.9, 1.2, "within noise", runners_up=("ppo",), leaders=("grpo",)): (
            "grpo leads within noise of ppo from 0.9 to 1.2 nats"
        ),
        Lead("ppo", 1.2, 1.8, "within noise", runners_up=("best_of_n",), leaders=("ppo", "best_of_n")): (
            "ppo and best_of_n within noise from 1.2 to 1.8 nats"
        ),
        Lead("ppo", 1.8, 2.4, "no interval", runners_up=("best_of_n",)): (
            "ppo leads (one seed: noise unknown) from 1.8 to 2.4 nats"
        ),
    }
    labels = {"reward": SimpleNamespace(label="gold reward"), "kl": SimpleNamespace(label="KL (nats)")}

    def leaders(leads: list[Lead]) -> list[str]:
        return equal_kl_leaders(SimpleNamespace(at_equal_kl=SimpleNamespace(leads=leads, **labels)))

    opening = "At equal KL (nats), the highest gold reward: "
    for lead, phrase in phrases.items():
        assert leaders([lead]) == [f"{opening}{phrase}."]
    lines = leaders(list(phrases)[:2])  # wrapped at 110 columns
    assert lines == [f"{opening}sft alone from 0 to 0.31 nats; dpo dominates from 0.31 to 0.9", "  nats."]
    lines = leaders(list(phrases) * 3)  # fifteen ranges: as many as fit in two lines, then how many more
    assert len(lines) == 2 and all(len(line) <= 110 for line in lines), lines
    shown = re.search(r"; (\d+) more range\(s\) in comparison\.md$", lines[-1])
    assert shown and " ".join(lines).count(" nats") == 15 - int(shown.group(1)), lines
    assert leaders([]) == [] and equal_kl_leaders(SimpleNamespace(at_equal_kl=None)) == []
