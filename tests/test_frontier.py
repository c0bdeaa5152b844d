"""Reward at equal KL (harness.report.frontier): each seed's Pareto front interpolated at a KL budget, the interval
over seeds, seeds that do not reach a budget, which method leads where, checkpoints along training as points, and
the "At equal KL" section of comparison.md, equal_kl.csv and report.html from a hand-made sweep."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from scipy import stats
from sweeps import make_job, suite_headline, write_multirun

from harness.errors import HarnessError
from harness.report import build_report
from harness.report.aggregate import Job, parse_kl_budgets
from harness.report.frontier import (
    DEFAULT_KL_BUDGETS,
    MethodFrontier,
    SeedFrontier,
    budget_cell,
    choose_budgets,
    dominance,
    dominance_lines,
    interpolate,
    method_frontiers,
    pareto,
    trajectory_points,
)
from harness.results import Result

REWARD, KL = "eval/gold/reward", "eval/kl/seq_kl"
T_975_DF2 = 4.302653  # Student t quantile 0.975 with 2 degrees of freedom


def _method(name: str, seeds: dict[str, list[tuple[float, float]]], bounds=(0.0, 1.0)) -> MethodFrontier:
    return MethodFrontier(name, {seed: SeedFrontier.of(seed, points) for seed, points in seeds.items()}, bounds)


# -- one seed ---------------------------------------------------------------------------------------------
def test_interpolation_between_two_front_points() -> None:
    """(0.5, 0.6) and (1.5, 0.8): at KL 1.0, halfway, 0.6 + 0.5 (0.8 - 0.6) = 0.7; at KL 0.75, a quarter of the way,
    0.65. The ends are the points themselves; nothing is extrapolated below the first or past the last."""
    front = [(0.5, 0.6), (1.5, 0.8)]
    assert interpolate(front, 1.0) == pytest.approx(0.7)
    assert interpolate(front, 0.75) == pytest.approx(0.65)
    assert (interpolate(front, 0.5), interpolate(front, 1.5)) == (0.6, 0.8)
    assert interpolate(front, 0.49) is None and interpolate(front, 1.51) is None
    assert interpolate(front, 1.8, highest=2.0) == 0.8  # up to the seed's largest KL: its best reward within budget
    assert interpolate([], 1.0) is None


def test_the_pareto_envelope_discards_a_dominated_point() -> None:
    """(1.0, 0.55) gets less reward than (0.5, 0.6) for more KL, and (2.0, 0.7) less than (1.5, 0.8): the front is
    (0.5, 0.6), (1.5, 0.8), so at KL 1.0 the seed gets 0.7 (not its measured 0.55). (2.0, 0.7) still counts for how
    far the seed reaches: at KL 1.8 its best within budget is 0.8; past 2.0 it never reaches."""
    points = [(1.0, 0.55), (0.5, 0.6), (2.0, 0.7), (1.5, 0.8), (1.5, 0.75)]
    assert pareto(points) == [(0.5, 0.6), (1.5, 0.8)]
    seed = SeedFrontier.of("0", points)
    assert seed.at(1.0) == pytest.approx(0.7)
    assert (seed.at(1.8), seed.reach(1.8)) == (0.8, "reaches")
    assert (seed.at(2.1), seed.reach(2.1)) == (None, "beyond")
    assert (seed.at(0.4), seed.reach(0.4)) == (None, "below")


# -- over seeds -------------------------------------------------------------------------------------------
def test_the_interval_at_a_budget_is_the_t_interval_of_the_seeds_values_within_bounds() -> None:
    """At KL 1.0, halfway between each seed's two points: seed 0 (0.85 + 0.95) / 2 = 0.90, seed 1 0.99, seed 2 0.97.
    Mean 0.95333, s.d. 0.04726, half-width 4.302653 * 0.04726 / sqrt(3) = 0.11740: scipy's [0.836, 1.071], whose top
    a reward in [0, 1] cannot reach: [0.836, 1.0]."""
    method = _method(
        "ppo",
        {
            "0": [(0.5, 0.85), (1.5, 0.95)],
            "1": [(0.0, 0.98), (2.0, 1.0)],
            "2": [(0.6, 0.96), (1.4, 0.98)],
        },
    )
    at = method.at(1.0)
    values = [0.90, 0.99, 0.97]
    assert [at.values[seed] for seed in "012"] == pytest.approx(values)
    mean, sem = sum(values) / 3, stats.sem(values)
    low, high = stats.t.interval(0.95, 2, loc=mean, scale=sem)
    assert high > 1.0  # scipy's interval leaves the metric's bounds ...
    s = at.summary
    assert (s.n, s.mean) == (3, pytest.approx(mean))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), 1.0)  # ... the report's stops at 1
    assert s.ci_low == pytest.approx(mean - T_975_DF2 * stats.tstd(values) / math.sqrt(3))
    assert budget_cell(at, 3) == "0.953 [0.836, 1.000] (3 seeds)"
    unbounded = _method("ppo", {seed: list(f.points) for seed, f in method.seeds.items()}, bounds=None).at(1.0)
    assert unbounded.summary.ci_high == pytest.approx(high)


def test_a_seed_that_never_reaches_a_budget_is_left_out_and_counted() -> None:
    """Seed 2 stops at KL 0.9: at KL 1.0 the mean is over seeds 0 and 1 (0.70, 0.72), "2 of 3 seeds". At 3.0 no seed
    reaches; at 0.1 every seed starts above it (KL 0 is not assumed)."""
    method = _method(
        "dpo",
        {
            "0": [(0.5, 0.6), (1.5, 0.8)],
            "1": [(0.5, 0.62), (1.5, 0.82)],
            "2": [(0.5, 0.6), (0.9, 0.64)],
        },
    )
    at = method.at(1.0)
    assert (at.reached, at.seeds, at.beyond, at.below, at.status) == (2, 3, 1, 0, "partial")
    assert at.summary.mean == pytest.approx(0.71)
    half = 12.706205 * stats.tstd([0.70, 0.72]) / math.sqrt(2)  # t quantile 0.975 on 1 df
    assert at.summary.ci_low == pytest.approx(0.71 - half)
    assert budget_cell(at, 3) == f"0.710 [{0.71 - half:.3f}, {0.71 + half:.3f}] (2 of 3 seeds)"
    assert budget_cell(method.at(3.0), 3) == "never reaches"
    assert budget_cell(method.at(0.1), 3) == "never this low"
    one = _method("dpo", {"0": [(0.5, 0.6), (1.5, 0.8)], "1": [(0.5, 0.6), (0.9, 0.64)]}).at(1.0)
    assert budget_cell(one, 3) == "0.700 (1 of 2 seeds)"  # one seed: no interval


# -- who leads where ----------------------------------------------------------------------------------------
def test_dominance_ranges_of_two_crossing_frontiers() -> None:
    """Per seed s (offsets e = -0.005, 0, +0.005): A = 0.2 + 0.2 KL + e, B = 0.4 + 0.05 KL + e on KL 0..2; their means
    cross where 0.2 + 0.2 x = 0.4 + 0.05 x, x = 4/3. Each interval is mean -/+ 4.302653 * 0.005 / sqrt(3) = 0.012421,
    so the two stop overlapping where the gap |0.2 - 0.15 x| exceeds 0.024842: below x = 1.16772 (B dominates), above
    x = 1.50228 (A dominates); between, within noise, B leading up to 4/3 and A after. Each boundary is where a
    difference linear between grid points crosses zero: exact."""
    offsets = {"0": -0.005, "1": 0.0, "2": 0.005}
    a = _method("a", {s: [(x, 0.2 + 0.2 * x + e) for x in (0.0, 1.0, 2.0)] for s, e in offsets.items()})
    b = _method("b", {s: [(x, 0.4 + 0.05 * x + e) for x in (0.0, 1.0, 2.0)] for s, e in offsets.items()})
    leads = dominance([a, b])
    assert [(lead.leaders, lead.state) for lead in leads] == [
        (("b",), "dominates"),
        (("b", "a"), "within noise"),  # one range: the means cross inside it, at 4/3
        (("a",), "dominates"),
    ]
    gap = 2 * T_975_DF2 * 0.005 / math.sqrt(3)
    assert (0.2 - gap) / 0.15 == pytest.approx(1.16772, abs=1e-5)
    boundaries = [leads[0].start] + [lead.end for lead in leads]
    assert boundaries == pytest.approx([0.0, (0.2 - gap) / 0.15, (0.2 + gap) / 0.15, 2.0], abs=1e-6)
    assert leads[1].crossings == pytest.approx((4 / 3,), abs=1e-6) and leads[1].methods == ("b", "a")
    assert [lead.runners_up for lead in leads] == [("a",), (), ("b",)]
    lines = dominance_lines(SimpleNamespace(leads=leads))
    assert lines == [
        "b dominates from 0 to 1.17 nats (its 95% interval above a's).",
        "b and a within noise from 1.17 to 1.5 nats (95% intervals overlap; the higher mean changes hands at 1.33 "
        "nats).",
        "a dominates from 1.5 to 2 nats (its 95% interval above b's).",
    ]
    # past where b stops, a is alone; a method with one seed has no interval to judge noise by
    short = _method("b", {s: [(x, 0.4 + 0.05 * x + e) for x in (0.0, 1.0)] for s, e in offsets.items()})
    assert [(lead.method, lead.state, lead.end) for lead in dominance([a, short])][-1] == ("a", "alone", 2.0)
    single = _method("b", {"0": [(0.0, 0.4), (2.0, 0.5)]})
    assert {lead.state for lead in dominance([a, single])} == {"no interval"}
    assert dominance([a]) == []


def test_a_method_where_only_a_minority_of_seeds_reach_takes_no_part_in_the_ranges() -> None:
    """b's seeds reach to KL 2, 1 and 1: past KL 1 only one of three does, so a is alone there (the table still shows
    b's one-seed mean, labelled "1 of 3 seeds")."""
    a = _method("a", {s: [(0.0, 0.1 + 0.01 * i), (2.0, 0.3 + 0.01 * i)] for i, s in enumerate("012")})
    b = _method("b", {"0": [(0.0, 0.8), (2.0, 0.9)], "1": [(0.0, 0.8), (1.0, 0.85)], "2": [(0.0, 0.81), (1.0, 0.86)]})
    leads = dominance([a, b])
    assert (leads[-1].method, leads[-1].state, leads[-1].start) == ("a", "alone", 1.0)  # where b's seeds 1, 2 stop
    assert budget_cell(b.at(1.5), 3) == "0.875 (1 of 3 seeds)"


# -- points along training ----------------------------------------------------------------------------------
def _job(metrics: dict[str, float], trajectory: list | None = None, seed: int = 0) -> Job:
    result = {"algorithm": "ppo", "seed": seed, "metrics": metrics}
    if trajectory is not None:
        result["trajectory"] = trajectory
    return Job({"algorithm": "ppo", "seed": str(seed)}, "complete", Result.from_dict(result))


def test_checkpoints_along_training_are_points_of_the_frontier() -> None:
    """The final policy at KL 2.0 (reward 0.9); checkpoints at KL 0.2 (0.5) and 1.0 (0.7), listed out of order, and
    one without a KL (skipped). With them the seed reaches KL 0.5: 0.5 + (0.7 - 0.5) 0.3 / 0.8 = 0.575; without,
    its only point is at KL 2.0, and KL 0.5 is never this low."""
    trajectory = [
        {"step": 80, "fraction": 0.5, "metrics": {REWARD: 0.7, KL: 1.0}},
        {"step": 40, "fraction": 0.25, "metrics": {REWARD: 0.5, KL: 0.2}},
        {"step": 120, "fraction": 0.75, "metrics": {REWARD: 0.8}},
    ]
    job = _job({REWARD: 0.9, KL: 2.0}, trajectory)
    assert trajectory_points(job, REWARD, KL) == [(0.2, 0.5), (1.0, 0.7)]
    group = SimpleNamespace(algorithm="ppo", params={}, complete=[job])
    (method,) = method_frontiers([group], REWARD, KL)
    assert method.seeds["0"].points == ((0.2, 0.5), (1.0, 0.7), (2.0, 0.9))
    assert method.at(0.5).summary.mean == pytest.approx(0.575)
    (without,) = method_frontiers(
        [SimpleNamespace(algorithm="ppo", params={}, complete=[_job({REWARD: 0.9, KL: 2.0})])], REWARD, KL
    )
    assert without.at(0.5).status == "never this low"


# -- budgets ------------------------------------------------------------------------------------------------
def test_budgets_default_to_those_the_data_reaches_or_as_asked() -> None:
    wide = _method("a", {"0": [(0.3, 0.5), (2.5, 0.8)]})
    assert DEFAULT_KL_BUDGETS == (0.25, 0.5, 1.0, 2.0, 4.0)
    assert choose_budgets([wide]) == ([0.5, 1.0, 2.0], "default")
    assert choose_budgets([wide], extra=[0.7]) == ([0.5, 0.7, 1.0, 2.0], "default")  # the jobs' own kl_budget
    assert choose_budgets([wide], asked=[3.0, 1.0]) == ([1.0, 3.0], "asked")
    tiny = _method("a", {"0": [(0.001, 0.5), (0.2, 0.8)]})  # below every default: powers of two, at most five
    # 2^-9 .. 2^-3 reached: seven, of which five spread over them (indices 0, 1.5, 3, 4.5, 6 rounded half to even)
    assert choose_budgets([tiny]) == ([2.0**-9, 2.0**-7, 2.0**-6, 2.0**-5, 2.0**-3], "powers of two")
    assert parse_kl_budgets("0.5, 1,2") == [0.5, 1.0, 2.0] and parse_kl_budgets([2, 1]) == [1.0, 2.0]
    assert parse_kl_budgets(None) is None
    for bad in ("0.5,x", "-1", [0.0], "nan"):
        with pytest.raises(HarnessError, match=r"kl_budgets=.*: expected positive KL budgets in nats, e\.g\. 0\.5,1,2"):
            parse_kl_budgets(bad)


# -- end to end ---------------------------------------------------------------------------------------------
E = {0: -0.01, 1: 0.0, 2: 0.01}  # per-seed offsets of the rewards


def _kl_sweep(root: Path) -> Path:
    """dpo and ppo, kl_beta 0.1 and 1.0, seeds 0-2. dpo: beta 1.0 at KL 0.5 (reward 0.60 + e), beta 0.1 at KL 1.5
    (0.80 + e). ppo: beta 1.0 at KL 0.4 (0.55 + e), beta 0.1 at KL 1.2 (0.75 + e) but seed 2 only at KL 0.9; each ppo
    job also has a checkpoint at KL 0.1 (reward 0.50 + e)."""
    write_multirun(root, {"algorithm": "dpo,ppo", "kl_beta": "0.1,1.0", "seed": "0,1,2"})
    points = {
        ("dpo", "1.0"): lambda s: (0.5, 0.60),
        ("dpo", "0.1"): lambda s: (1.5, 0.80),
        ("ppo", "1.0"): lambda s: (0.4, 0.55),
        ("ppo", "0.1"): lambda s: (0.9 if s == 2 else 1.2, 0.75),
    }
    number = 0
    for (algorithm, beta), point in points.items():
        for seed in range(3):
            kl, reward = point(seed)
            folder = make_job(
                root, number, algorithm, seed, {REWARD: reward + E[seed], KL: kl}, extra_overrides=(f"kl_beta={beta}",)
            )
            if algorithm == "ppo":
                result = json.loads((folder / "result.json").read_text())
                result["trajectory"] = [{"step": 10, "fraction": 0.5, "metrics": {REWARD: 0.5 + E[seed], KL: 0.1}}]
                (folder / "result.json").write_text(json.dumps(result))
            number += 1
    return root


def _interval(values: list[float], digits: int = 3) -> str:
    mean = sum(values) / len(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return f"{mean:.{digits}f} [{max(low, 0.0):.{digits}f}, {min(high, 1.0):.{digits}f}]"


def test_comparison_md_has_the_at_equal_kl_table(tmp_path: Path) -> None:
    """Budgets: of 0.25, 0.5, 1, 2, 4, those some seed reaches (ppo's checkpoints reach 0.25; nothing reaches 2).
    dpo at KL 1: halfway between its two points, 0.70 + e on every seed: 0.700 [0.675, 0.725]. ppo at KL 1: seeds 0
    and 1 interpolate 0.55 + e + 0.20 (0.6 / 0.8) = 0.70 + e (0.69, 0.70); seed 2 stops at 0.9. ppo at KL 0.25:
    0.50 + e + 0.05 (0.15 / 0.3) = 0.525 + e on every seed. dpo starts at KL 0.5: never this low at 0.25."""
    report = build_report(_kl_sweep(tmp_path))
    markdown = report.markdown
    section = markdown[markdown.index("### At equal KL") : markdown.index("### Cost")]
    assert "| method | at KL 0.25 | at KL 0.5 | at KL 1 |" in section
    dpo_at_1 = _interval([0.69, 0.70, 0.71])
    assert dpo_at_1 == "0.700 [0.675, 0.725]"
    ppo_at_1 = _interval([0.69, 0.70])
    ppo_at_025 = _interval([0.515, 0.525, 0.535])
    dpo_at_05 = _interval([0.59, 0.60, 0.61])
    ppo_at_05 = _interval([0.55 + e + 0.125 * (0.20) for e in (-0.01, 0.0)] + [0.55 + 0.01 + 0.2 * 0.1 / 0.5])
    assert f"| dpo | never this low | **{dpo_at_05} (3 seeds)** | **{dpo_at_1} (3 seeds)** |" in section
    assert f"| ppo | {ppo_at_025} (3 seeds) | {ppo_at_05} (3 seeds) | {ppo_at_1} (2 of 3 seeds) |" in section
    assert "gold reward at equal KL (nats), budgets 0.25, 0.5, 1: of the defaults" in section
    assert "KL is to the policy a method started from" in section  # the KL suite's note
    assert "- ppo alone from 0.1 to 0.5 nats" in section and "- dpo " in section
    rows = list(csv.DictReader(io.StringIO((tmp_path / "equal_kl.csv").read_text())))
    assert len(rows) == 6 and rows[0]["method"] == "dpo" and rows[0]["status"] == "never this low"
    ppo_1 = next(r for r in rows if r["method"] == "ppo" and r["kl_budget"] == "1.0")
    assert (ppo_1["seeds_reaching"], ppo_1["seeds"], ppo_1["seeds_beyond"]) == ("2", "3", "1")
    assert float(ppo_1["mean"]) == pytest.approx(0.695)
    page = (tmp_path / "report.html").read_text()
    assert "<h2>At equal KL</h2>" in page and '<table class="equal-kl">' in page and 'class="dominance"' in page
    assert (tmp_path / "frontier.png").stat().st_size > 0
    assert build_report(tmp_path).equal_kl_csv == report.equal_kl_csv  # a rebuild is identical


def test_budgets_asked_on_the_command_line_or_recorded_with_the_sweep(tmp_path: Path, capsys) -> None:
    from harness.report.cli import main

    root = _kl_sweep(tmp_path)
    main([str(root), "--kl-budgets", "1,2", "--quiet"])
    markdown = (root / "comparison.md").read_text()
    assert "| method | at KL 1 | at KL 2 |" in markdown
    assert "| dpo | **0.700 [0.675, 0.725] (3 seeds)** | never reaches |" in markdown
    assert "budgets 1, 2, as asked for" in markdown
    multirun = yaml.safe_load((root / "multirun.yaml").read_text())
    multirun["hydra"]["callbacks"]["report"]["kl_budgets"] = [0.5]
    (root / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    assert "| method | at KL 0.5 |" in build_report(root).markdown
    with pytest.raises(SystemExit) as exit_info:
        main([str(root), "--kl-budgets", "one"])
    assert exit_info.value.code == 2
    assert "error: kl_budgets='one': expected positive KL budgets in nats" in capsys.readouterr().err


def test_without_gold_the_judges_win_rate_is_the_reward(tmp_path: Path) -> None:
    """No suite declares a quality metric: the frontier's reward is the win rate, named as the table names it. Each
    job: a checkpoint at KL 0.5 (win rate 0.5), the final policy at KL 1.5 (0.7 + 0.1 seed); at KL 1, halfway,
    0.60 and 0.65. dpo and ppo tie: no best is marked."""
    write_multirun(tmp_path, {"algorithm": "dpo,ppo", "seed": "0,1"})
    headline = suite_headline(("win_rate", "kl"))
    rate = "eval/win_rate/rate"
    for number, (algorithm, seed) in enumerate((a, s) for a in ("dpo", "ppo") for s in (0, 1)):
        metrics = {rate: 0.7 + 0.1 * seed, KL: 1.5, "eval/win_rate/judged_by_gold": 0.0}
        folder = make_job(tmp_path, number, algorithm, seed, metrics, headline=headline)
        result = json.loads((folder / "result.json").read_text())
        result["trajectory"] = [{"step": 5, "fraction": 0.5, "metrics": {rate: 0.5, KL: 0.5}}]
        (folder / "result.json").write_text(json.dumps(result))
    report = build_report(tmp_path)
    assert "win rate (judge: training reward) at equal KL (nats), budgets 0.5, 1:" in report.markdown
    at_1 = _interval([0.60, 0.65])
    assert f"| dpo | 0.500 [0.500, 0.500] (2 seeds) | {at_1} (2 seeds) |" in report.markdown
    section = report.markdown[report.markdown.index("### At equal KL") : report.markdown.index("### Cost")]
    assert "**" not in section  # tied everywhere: no best marked


def test_no_section_without_a_kl_metric(tmp_path: Path) -> None:
    write_multirun(tmp_path, {"algorithm": "sft,dpo", "seed": "0"})
    for number, algorithm in enumerate(("sft", "dpo")):
        make_job(tmp_path, number, algorithm, 0, {REWARD: 0.5})
    report = build_report(tmp_path)
    assert "At equal KL" not in report.markdown
    assert report.equal_kl_csv.splitlines() == [",".join(report.equal_kl_csv.splitlines()[0].split(","))]


def test_a_method_pools_its_kl_strengths_but_not_its_other_settings() -> None:
    """PPO at two kl_betas is one frontier; PPO on the gold reward (PPO-GT) is a frontier of its own."""
    from harness.report.frontier import method_name

    def group(**params: str) -> SimpleNamespace:
        return SimpleNamespace(algorithm="ppo", params=params, complete=[_job({REWARD: 0.5, KL: 1.0})])

    groups = [group(kl_beta="0.1"), group(kl_beta="0.3"), group(reward="gold", kl_beta="0.1")]
    assert [method_name(g) for g in groups] == ["ppo", "ppo", "ppo reward=gold"]
    assert method_name(group(**{"algorithm.trainer.kl_coef": "0.05", "algorithm.n": "4"})) == "ppo"
    assert [m.method for m in method_frontiers(groups, REWARD, KL)] == ["ppo", "ppo reward=gold"]
