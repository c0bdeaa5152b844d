"""The report's "Reach beyond the base model" section (plugins/evals/reach.py) on hand-made sweeps: pass_at_k.jsonl
files whose right counts are written out below, so every share can be counted by hand. No model is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweeps import make_job, write_multirun

from harness.report import build_report
from harness.report.aggregate import load_sweep
from harness.report.tables import compare
from plugins.evals.reach import reach_section

N = 4  # samples per problem in every job below
HEADLINE = [{"key": "eval/pass_at_k/pass_at_1", "label": "pass@1", "better": "higher", "role": "quality",
             "bounds": [0.0, 1.0]}]  # fmt: skip
# Right samples (of N) per problem and job. eval: p1..p6; hard: h1, h2.
#   base (both seeds the same draw) solves p1 p2 p4 (3 of 6) and h1 (1 of 2).
#   grpo seed 0 solves p1 p2 p3: beyond base p3, lost p4.  seed 1 solves p1 p2 p3 p5: beyond p3 p5, lost p4.
#   sft  seed 0 solves p1 p2 p4: nothing beyond, nothing lost.  seed 1 solves p1 p4: lost p2.
#   hard: grpo solves nothing (lost h1 on both seeds); sft solves h1 on both seeds.
RIGHT = {
    ("base", 0): {"p1": 4, "p2": 1, "p3": 0, "p4": 2, "p5": 0, "p6": 0, "h1": 1, "h2": 0},
    ("base", 1): {"p1": 4, "p2": 1, "p3": 0, "p4": 2, "p5": 0, "p6": 0, "h1": 1, "h2": 0},
    ("sft", 0): {"p1": 3, "p2": 1, "p3": 0, "p4": 1, "p5": 0, "p6": 0, "h1": 2, "h2": 0},
    ("sft", 1): {"p1": 2, "p2": 0, "p3": 0, "p4": 1, "p5": 0, "p6": 0, "h1": 1, "h2": 0},
    ("grpo", 0): {"p1": 4, "p2": 3, "p3": 1, "p4": 0, "p5": 0, "p6": 0, "h1": 0, "h2": 0},
    ("grpo", 1): {"p1": 4, "p2": 4, "p3": 2, "p4": 0, "p5": 1, "p6": 0, "h1": 0, "h2": 0},
}


def write_records(folder: Path, right: dict[str, int], n: int = N) -> None:
    rows = [{"split": "hard" if p.startswith("h") else "eval", "prompt": f"{p}?", "right": c, "n": n}
            for p, c in right.items()]  # fmt: skip
    (folder / "pass_at_k.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def make_sweep(root: Path, right: dict[tuple[str, int], dict[str, int]] = RIGHT, records: bool = True) -> Path:
    """base, sft, grpo x seeds 0, 1; each job's pass_at_k.jsonl from `right` (records=False: none written)."""
    methods = list(dict.fromkeys(method for method, _ in right))
    root.mkdir(parents=True, exist_ok=True)
    write_multirun(root, {"algorithm": ",".join(methods), "seed": "0,1"}, baseline=methods[0])
    for number, ((method, seed), counts) in enumerate(right.items()):
        pass_at_1 = sum(counts.values()) / (N * len(counts))
        folder = make_job(root, number, method, seed, {"eval/pass_at_k/pass_at_1": pass_at_1}, headline=HEADLINE)
        if records:
            write_records(folder, counts)
    return root


def section_of(root: Path):
    return reach_section(compare(load_sweep(root)))


def table_row(markdown: str, split: str, method: str) -> list[str]:
    """The cells of `method`'s row in the markdown table of `split`."""
    block = markdown.split(f"**{split}:")[1].split("\n\n")[1]
    row = next(line for line in block.splitlines() if line.startswith(f"| {method} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_shares_of_a_worked_sweep(tmp_path: Path) -> None:
    """eval, 6 problems, base solves 3 (0.500).
    grpo: solved 3/6, 4/6 -> mean 0.583 (0.500, 0.667); beyond 1/6, 2/6 -> 0.250 (0.167, 0.333); lost 1/6 both.
    sft: solved 3/6, 2/6 -> 0.417 (0.333, 0.500); beyond 0; lost 0, 1/6 -> 0.083 (0.000, 0.167).
    hard, 2 problems, base solves 1 (0.500): grpo solved 0, lost 0.500; sft solved 0.500, nothing beyond or lost.
    Each seed: solved = base solved + beyond - lost (grpo seed 1: 4/6 = 3/6 + 2/6 - 1/6)."""
    section = section_of(make_sweep(tmp_path))
    assert section is not None and (section.key, section.title) == ("reach", "Reach beyond the base model")
    s = section.summary
    assert s["reach/base/eval/solved"] == pytest.approx(0.5) and s["reach/base/eval/n"] == N
    assert s["reach/grpo/eval/solved"] == pytest.approx((3 / 6 + 4 / 6) / 2)
    assert s["reach/grpo/eval/beyond_base"] == pytest.approx((1 / 6 + 2 / 6) / 2)
    assert s["reach/grpo/eval/lost_reach"] == pytest.approx(1 / 6)
    assert s["reach/sft/eval/solved"] == pytest.approx((3 / 6 + 2 / 6) / 2)
    assert s["reach/sft/eval/beyond_base"] == 0.0
    assert s["reach/sft/eval/lost_reach"] == pytest.approx(1 / 12)
    assert (s["reach/grpo/eval/problems"], s["reach/grpo/eval/n"]) == (6, N)
    assert (s["reach/grpo/hard/solved"], s["reach/grpo/hard/lost_reach"]) == (0.0, 0.5)
    assert (s["reach/sft/hard/solved"], s["reach/sft/hard/beyond_base"], s["reach/sft/hard/lost_reach"]) == (
        0.5, 0.0, 0.0)  # fmt: skip
    for method in ("grpo", "sft"):  # the identity holds for the means too
        solved, beyond, lost = (s[f"reach/{method}/eval/{key}"] for key in ("solved", "beyond_base", "lost_reach"))
        assert solved == pytest.approx(s["reach/base/eval/solved"] + beyond - lost)

    markdown = section.markdown
    assert "**eval: 6 problems, n = 4**" in markdown and "**hard: 2 problems, n = 4**" in markdown
    assert markdown.index("**eval:") < markdown.index("**hard:")
    assert table_row(markdown, "eval", "base") == ["base", "4", "2", "0.500 (union)", "–", "–"]
    assert table_row(markdown, "eval", "grpo") == [
        "grpo", "4", "2", "0.583 (0.500, 0.667)", "0.250 (0.167, 0.333)", "0.167"]  # fmt: skip
    assert table_row(markdown, "eval", "sft") == [
        "sft",
        "4",
        "2",
        "0.417 (0.333, 0.500)",
        "0.000",
        "0.083 (0.000, 0.167)",
    ]
    assert table_row(markdown, "hard", "grpo") == ["grpo", "4", "2", "0.000", "0.000", "0.500"]
    assert "Yue et al. 2025" in markdown and '"Never in n" depends on n' in markdown
    assert "(0.32 at n = 4 at p = 1/n)" in markdown  # (1 - 1/4)^4 = 0.316: the chance of no right sample at p = 1/n
    assert "jobs drew the same right counts on every problem (one draw)" in markdown
    assert "differ" not in markdown and "left out" not in markdown  # nothing to warn about

    header, rows = section.tables["reach"]
    grpo_eval = next(row for row in rows if row[:2] == ["eval", "grpo"])
    assert dict(zip(header, grpo_eval, strict=True)) == {
        "split": "eval", "method": "grpo", "n": "4", "seeds": 2, "problems": 6,
        "solved": pytest.approx(7 / 12), "beyond_base": pytest.approx(0.25),
        "lost_reach": pytest.approx(1 / 6)}  # fmt: skip
    assert section.html.count('<div class="table-scroll"><table class="reach">') == 2
    assert "<h3>eval: 6 problems, n = 4</h3>" in section.html


def test_no_base_group_or_no_records_gives_no_section(tmp_path: Path) -> None:
    without_base = {key: value for key, value in RIGHT.items() if key[0] != "base"}
    assert section_of(make_sweep(tmp_path / "no_base", without_base)) is None
    assert section_of(make_sweep(tmp_path / "no_records", records=False)) is None  # a base, but no eval=pass_at_k


def test_a_job_without_its_file_is_left_out_with_a_note(tmp_path: Path) -> None:
    """sft seed 1 has no file: sft's shares are seed 0's alone (solved 3/6, nothing lost)."""
    root = make_sweep(tmp_path)
    (next(root.glob("*_sft_seed1")) / "pass_at_k.jsonl").unlink()
    section = section_of(root)
    assert "3_sft_seed1 (sft seed 1): no pass_at_k.jsonl, left out" in section.markdown
    assert table_row(section.markdown, "eval", "sft") == ["sft", "4", "1", "0.500", "0.000", "0.000"]
    assert section.summary["reach/grpo/eval/beyond_base"] == pytest.approx(0.25)  # the others unchanged


def test_differing_problems_use_the_intersection_and_differing_n_is_said(tmp_path: Path) -> None:
    """grpo seed 1 lacks p5 (which it alone solved): every share is over p1-p4, p6 (5 problems). base solves
    p1 p2 p4 (3/5); grpo solves p1 p2 p3 on both seeds: solved 3/5, beyond 1/5, lost 1/5. sft drew n = 8."""
    right = {key: dict(counts) for key, counts in RIGHT.items()}
    del right[("grpo", 1)]["p5"]
    root = make_sweep(tmp_path, right)
    write_records(next(root.glob("*_sft_seed0")), right[("sft", 0)], n=8)
    write_records(next(root.glob("*_sft_seed1")), right[("sft", 1)], n=8)
    section = section_of(root)
    s = section.summary
    assert s["reach/grpo/eval/problems"] == 5
    assert (s["reach/grpo/eval/solved"], s["reach/grpo/eval/beyond_base"], s["reach/grpo/eval/lost_reach"]) == (
        pytest.approx(3 / 5), pytest.approx(1 / 5), pytest.approx(1 / 5))  # fmt: skip
    assert s["reach/sft/eval/n"] == 8 and s["reach/grpo/eval/n"] == N
    assert "eval: the jobs' problems differ" in section.markdown
    assert "the shares are over the 5 problems every job has" in section.markdown
    assert "**eval: 5 problems, n = 4, 8**" in section.markdown
    assert "eval: n differs between jobs (base 4; sft 8; grpo 4)" in section.markdown
    assert table_row(section.markdown, "eval", "sft")[1] == "8"


def test_base_seeds_that_drew_differently_are_a_union(tmp_path: Path) -> None:
    """base seed 1 also solves p3: the base's union is p1-p4 (4/6), so grpo seed 0's p3 is no longer beyond it."""
    right = {key: dict(counts) for key, counts in RIGHT.items()}
    right[("base", 1)]["p3"] = 1
    section = section_of(make_sweep(tmp_path, right))
    assert section.summary["reach/base/eval/solved"] == pytest.approx(4 / 6)
    assert section.summary["reach/grpo/eval/beyond_base"] == pytest.approx((0 + 1 / 6) / 2)  # p5 on seed 1 only
    assert "eval: the base's 2 jobs drew different samples; its reach is their union, up to 8 samples" in (
        section.markdown)  # fmt: skip


def test_a_sweep_over_rlvr_settings_finds_its_base_by_algorithm(tmp_path: Path) -> None:
    """experiment=yue sweeps `+method=rlvr/base,rlvr/sft,...`: the groups are named by algorithm, the base found by
    it."""
    write_multirun(tmp_path, {"+method": "rlvr/base,rlvr/grpo", "seed": "0,1"}, baseline=None)
    for number, (method, seed) in enumerate([("base", 0), ("base", 1), ("grpo", 0), ("grpo", 1)]):
        folder = make_job(tmp_path, number, method, seed, {"eval/pass_at_k/pass_at_1": 0.5}, headline=HEADLINE,
                          extra_overrides=(f"+method=rlvr/{method}",))  # fmt: skip
        write_records(folder, RIGHT[(method, seed)])
    section = section_of(tmp_path)
    assert section.summary["reach/grpo/eval/beyond_base"] == pytest.approx(0.25)
    assert "against" not in section.markdown  # one base group


def test_the_section_lands_in_the_report_files(tmp_path: Path) -> None:
    report = build_report(make_sweep(tmp_path))
    assert [section.key for section in report.sections].count("reach") == 1
    markdown = (tmp_path / "comparison.md").read_text()
    assert "\n## Reach beyond the base model\n" in markdown and "| grpo | 4 | 2 | 0.583 (0.500, 0.667) |" in markdown
    page = report.html.read_text()
    assert '<h2 id="reach">Reach beyond the base model</h2>' in page
    body = page.split('<h2 id="reach">')[1]
    assert body.index('<div class="section-body">') < body.index('<div class="table-scroll"><table class="reach">')
