"""Is training finished? (harness.convergence, harness.report.finished): the slope of a job's loss and quality over
the last fifth of training on constructed cases, its record in result.json, and the report's budget-bound mark."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from sweeps import make_job, write_multirun

from harness.convergence import convergence, job_convergence, quality_metric, slope_record
from harness.report import html
from harness.report.aggregate import load_sweep
from harness.report.tables import compare, to_markdown
from harness.results import Result, TrajectoryPoint

GOLD = "eval/gold/reward"
T_975_DF1 = 12.7062  # Student t quantile 0.975 with 1 degree of freedom (any t table)


def _log(loss: list[float], key: str = "loss") -> list[dict[str, float]]:
    """A training log as a trainer keeps it: one row per logged step (1..n), then the repeated final row and the
    trainer's summary row (no `loss`) at the last step."""
    rows = [{"step": step, key: value} for step, value in enumerate(loss, start=1)]
    return [*rows, dict(rows[-1]), {"step": len(loss), "train_loss": sum(loss) / len(loss)}]


def _noise(n: int, scale: float, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(0.0, scale) for _ in range(n)]


def still_falling(seed: int = 0, steps: int = 100) -> list[float]:
    """A loss stopped mid-fall: 1 - 0.5 * fraction, with noise of sd 0.01."""
    noise = _noise(steps, 0.01, seed)
    return [1.0 - 0.5 * step / steps + noise[step - 1] for step in range(1, steps + 1)]


def converged(seed: int = 0, steps: int = 100) -> list[float]:
    """A loss that fell early and then sat at 0.3: 0.3 + 0.7 exp(-30 fraction), with noise of sd 0.01."""
    noise = _noise(steps, 0.01, seed)
    return [0.3 + 0.7 * math.exp(-30 * step / steps) + noise[step - 1] for step in range(1, steps + 1)]


def test_three_points_give_the_worked_slope_and_a_t_interval_with_one_degree_of_freedom() -> None:
    """(0.8, 1.0), (0.9, 0.9), (1.0, 0.85): mean x 0.9, mean y 0.91667, Sxx 0.02, Sxy -0.015, slope -0.75.
    Residuals 0.00833, -0.01667, 0.00833: SSR 1/2400; SE = sqrt(SSR / 1 / Sxx) = 0.14434; half-width
    12.7062 * 0.14434 = 1.8340: [-2.584, 1.084] holds 0, so even this steep a fall on 3 points is "flat"."""
    record = slope_record([(0.8, 1.0), (0.9, 0.9), (1.0, 0.85)], "lower")
    half_width = T_975_DF1 * math.sqrt(1 / 2400 / 0.02)
    assert record["slope"] == pytest.approx(-0.75)
    assert (record["low"], record["high"]) == (
        pytest.approx(-0.75 - half_width, abs=1e-4),
        pytest.approx(-0.75 + half_width, abs=1e-4),
    )
    assert (record["n"], record["window"], record["direction"]) == (3, [0.8, 1.0], "flat")
    assert (record["still_moving"], record["improving"]) == (False, False)


def test_a_loss_still_falling_when_training_stopped_is_flagged() -> None:
    record = convergence(_log(still_falling()), [], {}, None)
    loss = record["series"]["loss"]
    assert loss["key"] == "loss" and loss["source"] == "training log"
    assert loss["n"] == 21 and loss["window"] == [0.8, 1.0]  # steps 80..100 of 100, the repeated row once
    assert loss["high"] < 0 and loss["low"] < loss["slope"] < loss["high"]
    assert loss["slope"] == pytest.approx(-0.5, abs=0.1)
    assert (loss["direction"], loss["still_moving"], loss["improving"]) == ("falling", True, True)
    assert record["still_improving"] is True


def test_a_converged_loss_is_not_flagged() -> None:
    record = convergence(_log(converged()), [], {}, None)
    loss = record["series"]["loss"]
    assert loss["low"] <= 0 <= loss["high"] and loss["n"] == 21
    assert (loss["direction"], loss["still_moving"], loss["improving"]) == ("flat", False, False)
    assert record["still_improving"] is False


def test_a_quality_still_rising_along_its_snapshots_is_flagged() -> None:
    """Snapshots at 0.1 .. 0.9 and the final policy at 1.0: three points in the last fifth (0.8, 0.9, 1.0)."""
    trajectory = [
        TrajectoryPoint(10 * k, k / 10, {GOLD: 0.2 + 0.5 * k / 10 + e})
        for k, e in zip(range(1, 10), _noise(9, 1e-4), strict=True)
    ]
    record = convergence([], trajectory, {GOLD: 0.7}, (GOLD, "higher"))
    quality = record["series"]["quality"]
    assert (quality["key"], quality["source"], quality["n"], quality["window"]) == (GOLD, "trajectory", 3, [0.8, 1.0])
    assert quality["slope"] == pytest.approx(0.5, abs=0.01) and quality["low"] > 0
    assert (quality["direction"], quality["improving"], record["still_improving"]) == ("rising", True, True)
    assert "loss" not in record["series"]  # no training log: no loss series at all


def test_few_snapshots_fit_the_last_three_points_and_say_so() -> None:
    """Snapshots at 0.25, 0.5, 0.75 leave only the final point in the last fifth: the fit takes 0.5 .. 1.0."""
    trajectory = [TrajectoryPoint(25 * k, k / 4, {GOLD: 0.1 * k}) for k in (1, 2, 3)]
    quality = convergence([], trajectory, {GOLD: 0.4}, (GOLD, "higher"))["series"]["quality"]
    assert quality["window"] == [0.5, 1.0] and quality["n"] == 3
    assert quality["slope"] == pytest.approx(0.4) and quality["improving"] is True  # an exact line: zero-width


def test_a_quality_that_got_worse_is_moving_but_not_improving() -> None:
    trajectory = [TrajectoryPoint(25 * k, k / 4, {GOLD: 0.5 - 0.1 * k}) for k in (1, 2, 3)]
    record = convergence([], trajectory, {GOLD: 0.1}, (GOLD, "higher"))
    quality = record["series"]["quality"]
    assert (quality["direction"], quality["still_moving"], quality["improving"]) == ("falling", True, False)
    assert record["still_improving"] is False


def test_too_few_points_are_unknown_and_never_flagged() -> None:
    trajectory = [TrajectoryPoint(50, 0.5, {GOLD: 0.2})]
    record = convergence(_log([0.9, 0.5]), trajectory, {GOLD: 0.9}, (GOLD, "higher"))
    for name in ("loss", "quality"):
        series = record["series"][name]
        assert series["n"] == 2 and series["direction"] == "unknown"
        assert series["slope"] is None and series["still_moving"] is None and series["improving"] is None
    assert record["still_improving"] is None
    assert convergence([], [], {}, None) == {"series": {}, "still_improving": None}


def test_a_declared_training_curve_is_read_as_quality() -> None:
    """PPO declares a proxy score, a gold score (role quality) and a KL: the gold score is the one read."""
    curves = [
        {"key": "objective/score", "role": "proxy"},
        {"key": "objective/gold_score", "role": "quality"},
        {"key": "objective/kl", "role": "divergence"},
    ]
    rising = [0.1 + 0.4 * step / 100 + e for step, e in zip(range(1, 101), _noise(100, 0.01), strict=True)]
    record = convergence(_log(rising, key="objective/gold_score"), [], {}, None, curves)
    assert "loss" not in record["series"]  # PPO logs no `loss` (its pg_loss measures no convergence)
    train_quality = record["series"]["train_quality"]
    assert train_quality["key"] == "objective/gold_score" and train_quality["improving"] is True
    assert record["still_improving"] is True


def test_the_quality_metric_is_the_objective_else_the_declared_quality() -> None:
    metrics = {GOLD: 0.5, "eval/win_rate/rate": 0.6, "eval/kl/seq_kl": 1.0}
    headline = [
        {"key": "eval/kl/seq_kl", "better": None, "role": "divergence"},
        {"key": "eval/win_rate/rate", "better": "higher", "role": None},
        {"key": GOLD, "better": "higher", "role": "quality"},
    ]
    assert quality_metric("eval/win_rate/rate", headline, metrics) == ("eval/win_rate/rate", "higher")
    assert quality_metric(None, headline, metrics) == (GOLD, "higher")
    assert quality_metric(None, headline[:2], metrics) == ("eval/win_rate/rate", "higher")
    assert quality_metric(None, [], metrics) == (GOLD, "higher")
    assert quality_metric("eval/missing/metric", [], {}) is None


def test_a_result_keeps_its_convergence_when_written_and_read(tmp_path: Path) -> None:
    record = convergence(_log(still_falling()), [], {}, None)
    result = Result(algorithm="dpo", seed=0, metrics={GOLD: 0.5}, convergence=record)
    again = Result.read(result.write(tmp_path))
    assert again == result and again.convergence["series"]["loss"]["improving"] is True
    assert Result.from_dict({"algorithm": "sft"}).convergence == {}  # a result from before it was measured


def _sweep(root: Path) -> None:
    """dpo stopped mid-fall on every seed, sft converged on every seed, base never trained; each result.json with
    the convergence its job would have recorded (from the train_log.jsonl beside it)."""
    write_multirun(root, {"algorithm": "base,sft,dpo", "seed": "0,1,2"})
    number = 0
    for algorithm, loss in (("base", None), ("sft", converged), ("dpo", still_falling)):
        for seed in range(3):
            curve = None if loss is None else list(enumerate(loss(seed), start=1))
            curve = curve and [(step, {"loss": value}) for step, value in curve]
            folder = make_job(root, number, algorithm, seed, {GOLD: 0.5 + 0.01 * seed}, curve=curve)
            result = Result.read(folder)
            result.convergence = job_convergence(folder, result.trajectory, result.metrics, None, result.headline, [])
            result.write(folder)
            number += 1


def test_the_report_marks_the_method_still_improving_and_not_the_converged_one(tmp_path: Path) -> None:
    _sweep(tmp_path)
    comparison = compare(load_sweep(tmp_path))
    markdown = to_markdown(comparison)
    section = markdown.split("### Training finished?")[1].split("###")[0]
    lines = {line.split(":")[0].removeprefix("- "): line for line in section.splitlines() if line.startswith("- ")}
    assert lines["dpo"].startswith("- dpo: budget-bound, 3/3 runs still improving (loss slope -0.")
    assert "per training, over 0.8-1 of training; median run)" in lines["dpo"]
    assert lines["sft"].startswith("- sft: not budget-bound, 0/3 runs still improving (loss slope")
    assert lines["base"] == "- base: not measured (no training log, or fewer than 3 points on every series)"
    page = html.render(comparison, {})
    assert "<h2>Training finished?</h2>" in page and "dpo: budget-bound, 3/3 runs still improving" in page
    assert "sft: not budget-bound, 0/3" in page


def test_a_sweep_without_recorded_convergence_has_no_section(tmp_path: Path) -> None:
    write_multirun(tmp_path, {"algorithm": "sft", "seed": "0"})
    make_job(tmp_path, 0, "sft", 0, {GOLD: 0.5}, curve=[(1, {"loss": 1.0}), (2, {"loss": 0.5}), (3, {"loss": 0.2})])
    comparison = compare(load_sweep(tmp_path))
    assert "Training finished?" not in to_markdown(comparison)
    assert "Training finished?" not in html.render(comparison, {})
