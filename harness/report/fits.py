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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


# -- the report's section --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodFit:
    """One method (an algorithm with its proxy's settings) fitted in one form, from its gains over the start."""

    method: str
    form: str
    fit: Fit | None
    points: tuple[tuple[float, float], ...]  # (KL, gold gain) of every policy: final and along training, all seeds
    baseline: str  # what the gains are measured from


def overoptimisation(comparison: Any, forms: Mapping[str, str]) -> list[MethodFit]:
    """Every method whose algorithm `forms` maps to a form (`{best_of_n: bon, ppo: rl}`, the report callback's
    `fits`), fitted on its gold gain over the sweep's baseline group (the starting policy, paired by seed) against
    d = sqrt(KL)."""
    from harness.report.frontier import final_point, method_name, trajectory_points

    result = comparison.at_equal_kl
    if result is None or not forms:
        return []
    reward_key, kl_key = result.reward.key, result.kl.key
    start: dict[str, list[float]] = {}
    baseline = comparison.sweep.baseline
    for group in comparison.groups:
        if group.algorithm == baseline:
            for job in group.complete:
                if reward_key in job.metrics:
                    start.setdefault(job.seed, []).append(job.metrics[reward_key])
    by_seed = {seed: float(np.mean(values)) for seed, values in start.items()}
    overall = float(np.mean([v for values in start.values() for v in values])) if start else 0.0
    collected: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for group in comparison.groups:
        form = forms.get(group.algorithm)
        if form is None:
            continue
        for job in group.complete:
            points = trajectory_points(job, reward_key, kl_key)
            if (final := final_point(job, reward_key, kl_key)) is not None:
                points.append(final)
            origin = by_seed.get(job.seed, overall)
            collected.setdefault((method_name(group), form), []).extend((kl, reward - origin) for kl, reward in points)
    where = f"{baseline} (paired by seed)" if start else "0 (no baseline group in the sweep: raw reward)"
    return [
        MethodFit(method, form, fit(form, [p[0] for p in points], [p[1] for p in points]), tuple(points), where)
        for (method, form), points in collected.items()
    ]


def to_markdown(fits: Sequence[MethodFit], reward_label: str) -> str:
    if not fits:
        return ""
    lines = [
        "### Over-optimisation fits (Gao et al. 2022)",
        "",
        "| method | form | alpha | beta | R² | points | d observed | peak d* (KL*) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for item in fits:
        found = item.fit
        if found is None:
            count = len(item.points)
            lines.append(f"| {item.method} | {FORMS[item.form]} | – | – | – | {count} | – | too few points |")
            continue
        peak = found.peak
        where = "none seen (beta <= 0)" if math.isinf(peak) else f"{peak:.2f} ({peak * peak:.2f} nats)"
        if not math.isinf(peak) and peak > found.d_max:
            where += ", beyond the data"
        lines.append(
            f"| {item.method} | {FORMS[item.form]} | {found.alpha:.3f} | {found.beta:.3f} | {found.r_squared:.2f} "
            f"| {found.points} | 0 – {found.d_max:.2f} | {where} |"
        )
    baseline = fits[0].baseline
    lines += [
        "",
        f"{reward_label} gained over {baseline} against d = sqrt(KL), every policy of a method (its final one and "
        "those along training or at smaller n, every seed), least squares through the origin. Gao et al. 2022 fit "
        "best-of-n as d(alpha - beta d) and RL as d(alpha - beta log d); the peak is where the gold gain turns "
        "down, the over-optimisation point.",
    ]
    return "\n".join(lines) + "\n"


def figure(fits: Sequence[MethodFit], reward_label: str) -> bytes | None:
    """Gold gain against d = sqrt(KL): every policy as a point, each method's fitted curve over its observed d."""
    if not fits:
        return None
    from harness.report.plots import _png, _pyplot

    plt = _pyplot()
    palette = plt.get_cmap("tab10" if len(fits) <= 10 else "tab20")
    figure_, axes = plt.subplots(figsize=(7.5, 5))
    for index, item in enumerate(fits):
        colour = palette(index % palette.N)
        d = np.sqrt(np.clip([p[0] for p in item.points], 0, None))
        marker = "o" if item.form == "bon" else "^"
        axes.scatter(d, [p[1] for p in item.points], color=colour, alpha=0.35, s=14, marker=marker, linewidths=0)
        if item.fit is not None:
            grid = np.linspace(0, item.fit.d_max, 100)
            fitted = f"alpha {item.fit.alpha:.2f}, beta {item.fit.beta:.2f}"
            axes.plot(grid, item.fit.predict(grid), color=colour, label=f"{item.method} ({fitted})")
        else:
            axes.scatter([], [], color=colour, marker=marker, label=f"{item.method} (too few points to fit)")
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.set_xlabel("d = sqrt(KL to the start, nats)")
    axes.set_ylabel(f"{reward_label} gained")
    axes.set_title("Over-optimisation: best-of-n d(alpha - beta d) (o), RL d(alpha - beta log d) (^)", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    return _png(figure_)
