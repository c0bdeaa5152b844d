"""The value a job returns to a sweeper: the objective metric, at a KL budget when one is set."""

from __future__ import annotations

import itertools
import math

import pytest

from harness.errors import HarnessError
from harness.objective import OVER_BUDGET_PENALTY, objective_value

GOLD, KL = "eval/gold/reward", "eval/kl/seq_kl"


def test_without_a_budget_the_metric_is_returned_as_is() -> None:
    assert objective_value({GOLD: 0.75, KL: 9.0}, GOLD, None) == 0.75
    assert objective_value({GOLD: 0.75}, GOLD, None) == 0.75  # no KL needed without a budget


def test_within_the_budget_the_metric_is_returned_as_is() -> None:
    assert objective_value({GOLD: 0.6, KL: 0.4}, GOLD, kl_budget=1.0, kl_key=KL) == 0.6
    assert objective_value({GOLD: 0.6, KL: 1.0}, GOLD, kl_budget=1.0, kl_key=KL) == 0.6  # the budget itself is allowed
    assert (
        objective_value({GOLD: 0.6, KL: -0.01}, GOLD, kl_budget=0.0, kl_key=KL) == 0.6
    )  # a sample estimate below zero


def test_over_the_budget_the_penalty_is_fixed_plus_the_excess() -> None:
    """gold 0.9 at KL 1.5 with budget 1.0: 0.9 - 1000 - (1.5 - 1.0) = -999.6."""
    assert objective_value({GOLD: 0.9, KL: 1.5}, GOLD, kl_budget=1.0, kl_key=KL) == pytest.approx(0.9 - 1000 - 0.5)


def test_every_over_budget_trial_ranks_below_every_in_budget_one() -> None:
    """The best over-budget trial (gold 1.0, KL just over) still scores below the worst in-budget one (gold 0.0):
    1.0 - 1000 - 1e-9 < 0.0. Among over-budget trials, less excess KL ranks higher at equal reward."""
    budget = 1.0
    inside = [
        objective_value({GOLD: g, KL: k}, GOLD, budget, kl_key=KL)
        for g, k in itertools.product([0.0, 0.5, 1.0], [0, 1])
    ]
    outside = [
        objective_value({GOLD: g, KL: k}, GOLD, budget, kl_key=KL)
        for g, k in itertools.product([0.0, 0.5, 1.0], [1 + 1e-9, 2.0, 50.0, 1e9, math.inf, math.nan])
    ]
    assert max(outside) < min(inside)
    assert objective_value({GOLD: 0.5, KL: 2.0}, GOLD, budget, KL) > objective_value(
        {GOLD: 0.5, KL: 3.0}, GOLD, budget, KL
    )
    # values stay finite (a sampler cannot rank -inf against -inf), however far over the budget
    assert all(math.isfinite(value) for value in outside)
    assert min(outside) == pytest.approx(0.0 - 2 * OVER_BUDGET_PENALTY)


def test_an_unmeasured_kl_counts_as_over_budget() -> None:
    assert objective_value({GOLD: 0.9, KL: math.nan}, GOLD, kl_budget=1.0, kl_key=KL) < 0


def test_a_missing_objective_gives_none() -> None:
    assert objective_value({KL: 0.1}, GOLD, kl_budget=1.0, kl_key=KL) is None
    assert objective_value({}, GOLD, None) is None


def test_a_budget_without_the_kl_metric_names_the_missing_key() -> None:
    with pytest.raises(HarnessError, match="needs eval/kl/seq_kl in the job's metrics; add kl to eval"):
        objective_value({GOLD: 0.5}, GOLD, kl_budget=1.0, kl_key=KL)
    with pytest.raises(HarnessError, match="kl_budget=-1"):
        objective_value({GOLD: 0.5, KL: 0.1}, GOLD, kl_budget=-1.0, kl_key=KL)


def test_another_kl_key_can_be_budgeted() -> None:
    metrics = {GOLD: 0.7, KL: 0.1, "eval/kl/analytic_kl": 3.0}
    assert objective_value(metrics, GOLD, 1.0, kl_key="eval/kl/analytic_kl") < 0


def test_a_budget_needs_to_know_its_kl_metric() -> None:
    with pytest.raises(HarnessError, match=r"kl_budget=1\.0 needs kl_metric"):
        objective_value({GOLD: 0.5, KL: 0.1}, GOLD, kl_budget=1.0)
