"""Statistics a reviewer can trust: intervals inside a metric's declared bounds, every pair of groups with
Holm-adjusted p-values, and the seeds a difference of a given size needs."""

from __future__ import annotations

import csv
import io
import math
import random
from pathlib import Path

import pytest
from scipy import stats
from sweeps import make_job, suite_headline, write_multirun

from harness.declarations import headline_entries
from harness.errors import HarnessError
from harness.report import build_report
from harness.report.aggregate import MAX_SEEDS, clip, difference, holm, paired, seeds_needed, summarise
from harness.report.tables import pairwise, seeds_estimate

SFT = [0.60, 0.65, 0.70]
DPO = [0.70, 0.80, 0.75]
PPO = [0.85, 0.80, 0.90]


# -- bounds -----------------------------------------------------------------------------------------------
def test_a_kl_interval_on_three_seeds_stops_at_zero() -> None:
    """KL 0.05, 0.40, 1.30 nats: mean 0.583, s.d. 0.6449, half-width 4.302653 * 0.6449 / sqrt(3) = 1.602, so the
    t-interval is [-1.019, 2.185] (the demo's DPO row had [-0.56, 1.73]). A KL is >= 0: [0, 2.185]."""
    values = [0.05, 0.40, 1.30]
    plain, bounded = summarise(values), summarise(values, bounds=(0.0, None))
    assert plain.ci_low == pytest.approx(-1.019, abs=1e-3) and not plain.clipped  # undeclared: the plain t-interval
    assert (bounded.ci_low, bounded.ci_high) == (0.0, pytest.approx(plain.ci_high))
    assert bounded.clipped and (bounded.mean, bounded.std) == (plain.mean, plain.std)


def test_a_rate_interval_stops_at_one() -> None:
    """Grammaticality 0.95, 0.99, 1.00: mean 0.98, s.d. 0.02646, half-width 0.0657: [0.914, 1.046] -> [0.914, 1]."""
    bounded = summarise([0.95, 0.99, 1.00], bounds=(0.0, 1.0))
    assert bounded.ci_low == pytest.approx(0.98 - 0.06572, abs=1e-4) and bounded.ci_high == 1.0
    assert summarise([1.0, 1.0, 1.0], bounds=(0.0, 1.0)).ci_high == 1.0  # every seed at the bound: no transform fails


def test_bounded_intervals_never_leave_their_bounds() -> None:
    rng = random.Random(0)
    for _ in range(500):
        n = rng.choice([2, 3, 4, 5])
        for bounds, draw in (((0.0, 1.0), rng.random), ((0.0, None), lambda: rng.expovariate(1.0) - 0.3)):
            s = summarise([draw() for _ in range(n)], bounds=bounds)
            low, high = bounds
            assert s.ci_low <= s.mean <= s.ci_high, s
            if s.mean >= low:  # always for [0, 1]; for the KL-like draws, unless the estimate itself is below 0
                assert low <= s.ci_low and (high is None or s.ci_high <= high), (bounds, s)
    # estimates below what the true value can be (k1 KLs): [-0.335, -0.285] -> from the estimate to the bound
    below = summarise([-0.32, -0.30, -0.31], bounds=(0.0, None))
    assert (below.ci_low, below.ci_high) == (pytest.approx(-0.31), 0.0) and below.clipped
    assert clip(-1.0, 2.0, None, 0.5) == (-1.0, 2.0, False)
    assert clip(1.1, 1.3, (0.0, 1.0), 1.2) == (1.0, 1.2, True)  # a wrong declaration: error bars stay drawable


def test_a_difference_of_rates_stays_within_minus_one_and_one() -> None:
    """Paired differences 0.9, 0.1, 0.95 of a [0, 1] rate: the t-interval reaches past 1; a difference cannot."""
    d = paired({0: 0.95, 1: 0.15, 2: 1.0}, {0: 0.05, 1: 0.05, 2: 0.05}, bounds=(0.0, 1.0))
    assert d.ci_high == 1.0 and d.clipped and d.ci_low > -1.0
    unbounded = paired({0: 0.95, 1: 0.15, 2: 1.0}, {0: 0.05, 1: 0.05, 2: 0.05})
    assert unbounded.ci_high > 1.0 and d.p_value == unbounded.p_value  # the test itself is unchanged


def test_bounds_are_declared_and_checked() -> None:
    declared = {e["key"]: e["bounds"] for e in suite_headline(("gold", "kl", "diversity", "win_rate", "judge"))}
    assert declared["eval/gold/reward"] == [0.0, 1.0] and declared["eval/kl/seq_kl"] == [0.0, None]
    assert declared["eval/gold/proxy_reward"] is None  # a learned reward: no bounds, none inferred
    for bad in ([1, 0], [0], "0,1", [0, "one"]):
        with pytest.raises(HarnessError, match=r"eval\.mysuite\.headline\[0\]: bounds=.*; expected \[low, high\]"):
            headline_entries("mysuite", [{"metric": "score", "bounds": bad}])


# -- Holm -------------------------------------------------------------------------------------------------
def test_holm_on_a_worked_example() -> None:
    """p = 0.01, 0.04, 0.03, 0.005 (m = 4). Sorted: 0.005, 0.01, 0.03, 0.04, times m - k + 1 = 4, 3, 2, 1:
    0.020, 0.030, 0.060, 0.040; running maximum: 0.020, 0.030, 0.060, 0.060. Back in the order given:
    0.03, 0.06, 0.06, 0.02. At alpha 0.05 Holm rejects 0.005 (<= 0.05/4) and 0.01 (<= 0.05/3), then stops at 0.03
    (> 0.05/2), so 0.04 is kept although 0.04 <= 0.05/1: exactly the adjusted p-values <= 0.05."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # 2 x 0.5 = 1.0; 0.6 is raised to the running maximum; capped at 1
    adjusted = holm([0.02, math.nan, 0.04])  # no test possible: NaN, and not counted in m (= 2)
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    assert holm([]) == []


# -- every pair of groups ---------------------------------------------------------------------------------
def _sweep(root: Path, groups: dict[str, list[float]], failed: tuple[str, int] | None = None) -> Path:
    seeds = max(len(values) for values in groups.values())
    write_multirun(root, {"algorithm": ",".join(groups), "seed": ",".join(map(str, range(seeds)))})
    number = 0
    for algorithm, values in groups.items():
        for seed in range(seeds):
            if (algorithm, seed) == failed or seed >= len(values):
                make_job(root, number, algorithm, seed, {}, status="failed")
            else:
                make_job(root, number, algorithm, seed, {"eval/gold/reward": values[seed]})
            number += 1
    return root


def test_pairwise_differences_with_holm_on_a_small_sweep(tmp_path: Path) -> None:
    """Paired by seed, each on 2 df, where t has the closed form p = 1 - t / sqrt(t^2 + 2):
    dpo - sft: 0.10, 0.15, 0.05: mean 0.10, s.e. 0.05/sqrt(3), t = 3.4641, p = 1 - 3.4641/sqrt(14) = 0.07418;
    ppo - sft: 0.25, 0.15, 0.20: mean 0.20, same s.e., t = 6.9282, p = 1 - 6.9282/sqrt(50) = 0.02020;
    ppo - dpo: 0.15, 0.00, 0.15: mean 0.10, s.d. 0.0866, s.e. 0.05, t = 2, p = 1 - 2/sqrt(6) = 0.18350.
    Holm (m = 3): 3 x 0.02020 = 0.06061, 2 x 0.07418 = 0.14836, max(1 x 0.18350, 0.14836) = 0.18350. Nothing is
    below 0.05 after the correction (ppo - sft was before it): all three within noise."""
    report = build_report(_sweep(tmp_path, {"sft": SFT, "dpo": DPO, "ppo": PPO}))
    comparison = report.comparison
    pairs = {(p.first, p.second): p for p in pairwise(comparison, comparison.quality)}
    assert list(pairs) == [("dpo", "sft"), ("ppo", "sft"), ("ppo", "dpo")]  # the better mean first
    expected = {("dpo", "sft"): (0.07418, 0.14836), ("ppo", "sft"): (0.02020, 0.06061), ("ppo", "dpo"): (0.18350,) * 2}
    for key, (p, adjusted) in expected.items():
        assert pairs[key].difference.test == "paired" and pairs[key].difference.n == 3
        assert (pairs[key].difference.p_value, pairs[key].holm_p) == (
            pytest.approx(p, abs=1e-5),
            pytest.approx(adjusted, abs=1e-5),
        )
        assert pairs[key].within_noise
    assert pairs[("ppo", "sft")].difference.diff == pytest.approx(0.20)
    assert "### Pairwise differences" in report.markdown
    assert "**gold reward (Holm over 3 pairs)**" in report.markdown
    assert "| ppo − sft | +0.200 [+0.076, +0.324] | paired, 3 seeds | 0.020 | 0.061 | ≈ |" in report.markdown
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Pairwise differences</h2>" in page and '<table class="pairwise">' in page


def test_a_clear_difference_is_not_marked_and_unmatched_seeds_use_welch(tmp_path: Path) -> None:
    """ppo beats sft by 0.30, 0.31, 0.29 (p far below 0.05 even after Holm); dpo's seed 2 failed, so its pairs
    are unpaired (Welch), checked against scipy's own Welch test."""
    groups = {"sft": SFT, "dpo": DPO, "ppo": [0.90, 0.96, 0.99]}
    report = build_report(_sweep(tmp_path, groups, failed=("dpo", 2)))
    pairs = {(p.first, p.second): p for p in pairwise(report.comparison, report.comparison.quality)}
    clear = pairs[("ppo", "sft")]
    assert clear.difference.test == "paired" and clear.holm_p < 0.05 and not clear.within_noise
    welch = pairs[("dpo", "sft")].difference
    scipy_welch = stats.ttest_ind(DPO[:2], SFT, equal_var=False)
    assert welch.test == "Welch" and welch.diff == pytest.approx(0.75 - 0.65)
    assert welch.p_value == pytest.approx(scipy_welch.pvalue)
    low, high = scipy_welch.confidence_interval(0.95)
    assert (welch.ci_low, welch.ci_high) == (pytest.approx(low), pytest.approx(high))
    row = next(line for line in report.markdown.splitlines() if line.startswith("| ppo − sft |"))
    assert row.endswith("|  |")  # no within-noise mark
    assert "| dpo − sft | +0.100 [" in report.markdown and "Welch, 2 + 3 seeds" in report.markdown
    assert math.isnan(difference({"0": 1.0}, {"0": 0.5}).p_value)  # one seed each: no test


# -- seeds needed -----------------------------------------------------------------------------------------
def _power(n: int, effect: float, paired_design: bool = True) -> float:
    """Two-sided t-test power at alpha 0.05 from the noncentral t, written out here independently."""
    df, nc = (n - 1, effect * math.sqrt(n)) if paired_design else (2 * n - 2, effect * math.sqrt(n / 2))
    critical = stats.t.ppf(0.975, df)
    return 1 - stats.nct.cdf(critical, df, nc) + stats.nct.cdf(-critical, df, nc)


def test_seeds_needed_against_the_noncentral_t() -> None:
    """s.d. 1, difference 1, paired: 10 pairs give power 0.803, 9 only 0.748 (the textbook n = 10 for d = 1; the
    normal approximation (1.960 + 0.842)^2 = 7.85 -> 8 is too few). Two groups: 17 per group."""
    assert seeds_needed(1.0, 1.0) == 10
    assert _power(10, 1.0) >= 0.8 > _power(9, 1.0)
    assert seeds_needed(1.0, 1.0, design="two-sample") == 17
    assert _power(17, 1.0, False) >= 0.8 > _power(16, 1.0, False)
    assert seeds_needed(0.012, 0.012) == 10  # only the ratio matters
    assert seeds_needed(0.01, 1.0) == 2  # the fewest a t-test can use
    assert seeds_needed(1.0, 0.01) is None and MAX_SEEDS < 10_000  # ~78,000: "more than MAX_SEEDS"
    assert seeds_needed(0.0, 0.1) is None and seeds_needed(math.nan, 0.1) is None


def test_seeds_needed_from_the_observed_seed_variance(tmp_path: Path) -> None:
    """The seed-paired differences of the small sweep have variances 0.0025, 0.0025, 0.0075 on 2 df each: pooled
    s.d. sqrt(0.0125 / 3) = 0.06455. Group means 0.65, 0.75, 0.85: pairwise differences 0.1, 0.2, 0.1, median 0.1."""
    report = build_report(_sweep(tmp_path, {"sft": SFT, "dpo": DPO, "ppo": PPO}))
    estimate = seeds_estimate(report.comparison)
    assert (estimate.design, estimate.pooled_over) == ("paired", 3)
    assert estimate.sd == pytest.approx(math.sqrt(0.0125 / 3))
    (median, at_median), (half, at_half) = estimate.deltas
    assert (median, half) == (pytest.approx(0.1), pytest.approx(0.05))
    effect = 0.1 / estimate.sd
    assert _power(at_median, effect) >= 0.8 > _power(at_median - 1, effect)
    assert at_half == seeds_needed(estimate.sd, 0.05) > at_median
    line = (
        f"Seeds needed (gold reward): with the observed seed s.d. of 0.065 (seed-paired differences, pooled over "
        f"3 pairs), detecting a 0.1 difference (the median between groups here) at alpha 0.05 two-sided with power "
        f"0.8 needs {at_median} seeds; a 0.05 difference (half of it) needs {at_half} seeds."
    )
    assert line in report.markdown
    assert "Seeds needed (gold reward)" in (tmp_path / "report.html").read_text()


def test_seeds_needed_without_shared_seeds_is_two_sample(tmp_path: Path) -> None:
    report = build_report(_sweep(tmp_path, {"sft": SFT, "dpo": DPO}, failed=("dpo", 2)))
    estimate = seeds_estimate(report.comparison)
    assert estimate.design == "two-sample" and estimate.pooled_over == 2
    # within-group variances 0.0025 (2 df) and 0.005 (1 df): pooled sqrt((0.005 + 0.005) / 3)
    assert estimate.sd == pytest.approx(math.sqrt(0.01 / 3))
    assert "seeds per group" in report.markdown


# -- the report as a whole --------------------------------------------------------------------------------
def test_the_report_clips_a_kl_interval_and_says_so(tmp_path: Path) -> None:
    """dpo's KL 0.2, -0.3, 1.0 (a k1 estimate can fall below 0): t-interval [-1.33, 1.93] -> [0, 1.93]."""
    write_multirun(tmp_path, {"algorithm": "sft,dpo", "seed": "0,1,2"})
    for number, (algorithm, seed) in enumerate((a, s) for a in ("sft", "dpo") for s in range(3)):
        kl = [0.2, -0.3, 1.0][seed] if algorithm == "dpo" else 1.0 + 0.1 * seed
        make_job(tmp_path, number, algorithm, seed, {"eval/gold/reward": (SFT + DPO)[number], "eval/kl/seq_kl": kl})
    report = build_report(tmp_path)
    row = next(line for line in report.markdown.splitlines() if line.startswith("| dpo |"))
    assert "| 0.30 [0.00, 1.93] |" in row
    dpo = {r["group"]: r for r in csv.DictReader(io.StringIO(report.csv))}["dpo"]
    assert float(dpo["eval/kl/seq_kl/ci_low"]) == 0.0
    assert "KL (nats): [0, ∞)" in report.markdown and "which moved an end for KL (nats) (dpo)" in report.markdown
    assert "KL (nats): 1 of 6 job values lies outside its declared bounds [0, ∞)" in report.markdown
    assert "KL (nats): [0, ∞)): the t-interval intersected with them" in (tmp_path / "report.html").read_text()
