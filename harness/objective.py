"""The number a job hands a sweeper (Optuna): the objective metric, optionally at a KL budget.

Reward bought by drifting far from the reference policy is the cheap kind (the reward-vs-KL frontier of the DPO
paper, Rafailov et al. 2023, fig. 2), so a search "maximise gold reward" alone drifts to the largest KL it can
reach. With a budget, a job whose KL exceeds it scores below every job within it, and among over-budget jobs
the one closer to the budget scores higher, which tells the sampler which way to go.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from harness.errors import HarnessError

# Pushes an over-budget job below every in-budget one as long as the objective's values span less than this
# (rewards, rates and fractions in [0, 1]; KL and losses in nats are far below 1000).
OVER_BUDGET_PENALTY = 1000.0


def objective_value(
    metrics: Mapping[str, float], objective: str, kl_budget: float | None, kl_key: str | None = None
) -> float | None:
    """`metrics[objective]` (to maximise), or, when `kl_budget` is set and `metrics[kl_key]` (the config's
    `kl_metric`) exceeds it, that value minus `OVER_BUDGET_PENALTY` minus the excess KL (capped at the same
    amount, so values stay finite). None when the job did not report the objective (the sweeper counts the
    trial as failed)."""
    if objective not in metrics or metrics[objective] is None:
        return None
    value = float(metrics[objective])
    if kl_budget is None:
        return value
    if kl_budget < 0:
        raise HarnessError(f"kl_budget={kl_budget} is negative; expected a KL in nats >= 0, or null for none")
    if not kl_key:
        raise HarnessError(f"kl_budget={kl_budget} needs kl_metric: the metric it budgets (eval/<suite>/<metric>)")
    if kl_key not in metrics:
        suite = kl_key.split("/")[1] if kl_key.count("/") >= 2 else "its suite"
        raise HarnessError(f"kl_budget={kl_budget} needs {kl_key} in the job's metrics; add {suite} to eval=[...]")
    kl = float(metrics[kl_key])
    if kl <= kl_budget:  # False for NaN too: a KL that could not be measured is not within any budget
        return value
    excess = kl - kl_budget if math.isfinite(kl) else OVER_BUDGET_PENALTY
    return value - OVER_BUDGET_PENALTY - min(excess, OVER_BUDGET_PENALTY)
