"""Was training finished? result.json `convergence`: whether a job's loss and quality were still moving over the
last fifth of its training, so a method stopped while still improving ("budget-bound") is measured, not guessed.

Each series is a list of (fraction of training, value) points:
    loss           the training log's `loss` (`train/loss`), at step / the log's last step
    quality        the job's quality metric along its trajectory (snapshots=N), plus the final metrics at 1.0
    train_quality  a training curve the algorithm declared (`curves:`): the one with role quality, else the first
                   that is no divergence; read as better when higher (rewards, margins, scores)
The slope of each is an ordinary least-squares fit of value on fraction, with its 95% Student-t interval (n - 2
degrees of freedom), over the points in the last fifth of training (fraction >= 0.8). Snapshots are few (0.25, 0.5,
0.75), so when the last fifth holds fewer than 3 points the fit takes the last 3 points of the series instead, and
`window` says which fractions it spanned; fewer than 3 points in all, and the series is "unknown". A slope whose
interval holds 0 is "flat"; one whose interval excludes 0 is "still moving", and "improving" when it moves the
better way (loss down, quality up). A job is still improving when any of its known series is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.results import TRAIN_LOG_FILE, TrajectoryPoint

LAST_PART = 0.2  # the window: the last fifth of training
MIN_POINTS = 3  # a slope's interval needs at least one degree of freedom beyond the line's two
CONFIDENCE = 0.95
LOSS_KEYS = ("loss", "train/loss")  # what a trainer logs as its loss; a PPO's pg_loss is no convergence measure
FALLBACK_QUALITY = "eval/gold/reward"


def slope_record(points: Iterable[tuple[float, float]], better: str) -> dict[str, Any]:
    """The slope of value on fraction over the window (the module docstring), as result.json records it:
    {n, window, slope, low, high, direction, still_moving, improving}. `better`: "higher" or "lower"."""
    series = sorted((float(x), float(y)) for x, y in points if _finite(x) and _finite(y))
    window = [(x, y) for x, y in series if x >= 1 - LAST_PART - 1e-9]
    if len(window) < MIN_POINTS:
        window = series[-MIN_POINTS:]
    xs = [x for x, _ in window]
    if len(window) < MIN_POINTS or max(xs) == min(xs):
        unknown = dict.fromkeys(("window", "slope", "low", "high", "still_moving", "improving"))
        return {"n": len(window), **unknown, "direction": "unknown"}
    slope, half_width = _ols_slope(window)
    low, high = slope - half_width, slope + half_width
    direction = "rising" if low > 0 else "falling" if high < 0 else "flat"
    improving = direction == ("rising" if better == "higher" else "falling")
    return {
        "n": len(window),
        "window": [round(xs[0], 6), round(xs[-1], 6)],
        "slope": slope,
        "low": low,
        "high": high,
        "direction": direction,
        "still_moving": direction != "flat",
        "improving": improving,
    }


def _ols_slope(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of y on x and the half-width of its t-interval: t(n-2) * sqrt(SSR / (n-2) / Sxx)."""
    from scipy import stats

    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    residuals = sum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in points)
    standard_error = math.sqrt(residuals / (n - 2) / sxx)
    return slope, float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 2)) * standard_error


def curve_points(log: Sequence[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    """A training-log key's (step / the log's last step, value) points, one per step (the last row of a step wins:
    a trainer repeats its final row)."""
    steps = [row["step"] for row in log if _finite(row.get("step"))]
    if not steps or max(steps) <= 0:
        return []
    by_step = {row["step"]: row[key] for row in log if _finite(row.get("step")) and _finite(row.get(key))}
    return [(step / max(steps), value) for step, value in by_step.items()]


def loss_key(log: Sequence[Mapping[str, Any]]) -> str | None:
    """The key the training log holds its loss under (LOSS_KEYS), or None."""
    return next((key for key in LOSS_KEYS if any(_finite(row.get(key)) for row in log)), None)


def quality_points(
    trajectory: Sequence[TrajectoryPoint], metrics: Mapping[str, Any], key: str
) -> list[tuple[float, float]]:
    """The quality metric along training (snapshots) and at its end (the final metrics, at fraction 1.0)."""
    by_fraction = {
        float(point.fraction): point.metrics[key]
        for point in trajectory
        if _finite(point.fraction) and _finite(point.metrics.get(key))
    }
    if _finite(metrics.get(key)):
        by_fraction[1.0] = metrics[key]
    return list(by_fraction.items())


def quality_metric(
    objective: str | None, headline: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any]
) -> tuple[str, str] | None:
    """The job's quality metric and which way is better: the sweep's `objective` (maximised), else the headline
    metric with role quality, else the first headline metric that says which way is better, else the gold reward;
    the first of these the job reported."""
    candidates = [(objective, "higher")] if objective else []
    ordered = sorted(headline, key=lambda entry: entry.get("role") != "quality")  # stable: declared order kept
    candidates += [(entry.get("key"), entry["better"]) for entry in ordered if entry.get("better")]
    candidates.append((FALLBACK_QUALITY, "higher"))
    return next(((key, better) for key, better in candidates if key in metrics), None)


def train_quality_curve(curves: Sequence[Mapping[str, Any]]) -> str | None:
    """The declared training curve read as quality: role quality, else the first that is not a divergence."""
    ordered = sorted(curves, key=lambda entry: entry.get("role") != "quality")
    return next((entry["key"] for entry in ordered if entry.get("role") != "divergence" and entry.get("key")), None)


def convergence(
    log: Sequence[Mapping[str, Any]],
    trajectory: Sequence[TrajectoryPoint],
    metrics: Mapping[str, Any],
    quality: tuple[str, str] | None,
    curves: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """result.json `convergence`: {series: {loss, quality, train_quality: {key, source, better, ...slope_record}},
    still_improving}. A series with no data at all is left out; `still_improving` is None when no series is known."""
    series: dict[str, dict[str, Any]] = {}
    if (loss := loss_key(log)) is not None:
        series["loss"] = _series(loss, "training log", "lower", curve_points(log, loss))
    if quality is not None:
        key, better = quality
        series["quality"] = _series(key, "trajectory", better, quality_points(trajectory, metrics, key))
    if (curve := train_quality_curve(curves)) is not None and (points := curve_points(log, curve)):
        series["train_quality"] = _series(curve, "training log", "higher", points)
    known = [record["improving"] for record in series.values() if record["improving"] is not None]
    return {"series": series, "still_improving": any(known) if known else None}


def job_convergence(
    output_dir: Path,
    trajectory: Sequence[TrajectoryPoint],
    metrics: Mapping[str, Any],
    objective: str | None,
    headline: Sequence[Mapping[str, Any]],
    curves: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """`convergence` of a finished job, from the training log it kept beside result.json (harness.job)."""
    path = Path(output_dir) / TRAIN_LOG_FILE
    log = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return convergence(log, trajectory, metrics, quality_metric(objective, headline, metrics), curves)


def _series(key: str, source: str, better: str, points: list[tuple[float, float]]) -> dict[str, Any]:
    return {"key": key, "source": source, "better": better, **slope_record(points, better)}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
