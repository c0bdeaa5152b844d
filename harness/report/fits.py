"""Reward-model over-optimisation as Gao et al. (2022) fit it: gold reward against d = sqrt(KL).

With d = sqrt(KL(pi || pi_init)) and R the gold reward gained over the initial policy,

    best-of-n:  R_bon(d) = d (alpha - beta d)            peak at d* = alpha / (2 beta)
    RL:         R_RL(d)  = d (alpha - beta log d)        peak at d* = exp(alpha / beta - 1)

Both are linear in (alpha, beta) -- R = alpha x1 - beta x2 with x1 = d and x2 = d^2 or d log d -- so each is an
ordinary least-squares fit through the origin (R(0) = 0 by construction: the initial policy gains nothing). A
proxy (a reward model of one training budget) gets one fit per kind of optimisation, from every point the sweep
has of it: every job's final policy and its snapshots along training (harness.snapshots), all seeds together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FORMS = {
    "bon": "d (alpha - beta d)",
    "rl": "d (alpha - beta log d)",
}


@dataclass(frozen=True)
class Fit:
    form: str  # bon | rl
    alpha: float
    beta: float
    r_squared: float
    points: int
    d_max: float  # the largest d observed: beyond it the fit is an extrapolation

    def predict(self, d: float | np.ndarray) -> np.ndarray:
        d = np.asarray(d, dtype=float)
        return d * (self.alpha - self.beta * _second(self.form, d) / np.where(d > 0, d, 1.0))

    @property
    def peak(self) -> float:
        """The d at which the fitted gold gain peaks (inf when beta <= 0: no over-optimisation seen)."""
        if self.beta <= 0:
            return math.inf
        return self.alpha / (2 * self.beta) if self.form == "bon" else math.exp(self.alpha / self.beta - 1)


def _second(form: str, d: np.ndarray) -> np.ndarray:
    """The regressor beta multiplies (with its sign folded into the model): d^2 or d log d (0 at d = 0)."""
    if form == "bon":
        return d * d
    safe = np.where(d > 0, d, 1.0)
    return np.where(d > 0, d * np.log(safe), 0.0)


def fit(form: str, kl: Sequence[float], gain: Sequence[float]) -> Fit | None:
    """Least-squares (alpha, beta) of `form` through the origin from KLs (nats) and gold gains; None with fewer
    than two points at d > 0 or a degenerate design (every point at one d)."""
    if form not in FORMS:
        raise ValueError(f"form={form!r}: expected one of {sorted(FORMS)}")
    d = np.sqrt(np.clip(np.asarray(kl, dtype=float), 0.0, None))
    y = np.asarray(gain, dtype=float)
    keep = np.isfinite(d) & np.isfinite(y)
    d, y = d[keep], y[keep]
    if int((d > 0).sum()) < 2:
        return None
    design = np.column_stack([d, -_second(form, d)])
    if np.linalg.matrix_rank(design) < 2:
        return None
    (alpha, beta), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ np.array([alpha, beta])
    total = float(((y - y.mean()) ** 2).sum())
    r_squared = 1.0 - float((residual**2).sum()) / total if total > 0 else float("nan")
    return Fit(form, float(alpha), float(beta), r_squared, len(d), float(d.max()))
