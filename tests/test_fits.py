"""Gao et al. (2022)'s over-optimisation forms, fitted on points made from known alpha and beta."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.report.fits import fit


@pytest.mark.parametrize(("form", "alpha", "beta"), [("bon", 0.6, 0.25), ("rl", 0.4, 0.15)])
def test_exact_points_give_back_alpha_and_beta(form: str, alpha: float, beta: float) -> None:
    kl = np.array([0.0, 0.19, 0.6, 1.2, 2.1, 3.2, 4.5])  # best-of-n's log n - (n - 1)/n for n = 1, 2, 4, ...
    d = np.sqrt(kl)
    second = d * d if form == "bon" else np.where(d > 0, d * np.log(np.where(d > 0, d, 1)), 0)
    gain = alpha * d - beta * second
    found = fit(form, kl, gain)
    assert found is not None
    assert (found.alpha, found.beta) == pytest.approx((alpha, beta), abs=1e-9)
    assert found.r_squared == pytest.approx(1.0)
    assert found.points == len(kl) and found.d_max == pytest.approx(d.max())
    assert found.predict(d) == pytest.approx(gain, abs=1e-9)
    peak = alpha / (2 * beta) if form == "bon" else math.exp(alpha / beta - 1)
    assert found.peak == pytest.approx(peak)


def test_noisy_points_recover_the_curve_within_noise() -> None:
    rng = np.random.default_rng(0)
    kl = np.repeat(np.linspace(0.1, 6.0, 12), 3)  # three seeds per point
    d = np.sqrt(kl)
    gain = d * (0.5 - 0.12 * np.log(d)) + rng.normal(0, 0.01, d.shape)
    found = fit("rl", kl, gain)
    assert found.alpha == pytest.approx(0.5, abs=0.02) and found.beta == pytest.approx(0.12, abs=0.02)
    assert found.r_squared > 0.95


def test_too_few_points_or_one_distance_fit_nothing() -> None:
    assert fit("bon", [0.0, 1.0], [0.0, 0.3]) is None  # one point at d > 0
    assert fit("bon", [1.0, 1.0, 1.0], [0.2, 0.3, 0.25]) is None  # every point at one d
    with pytest.raises(ValueError, match="form='quadratic'"):
        fit("quadratic", [1, 2], [0, 0])


def test_no_overoptimisation_seen_means_no_peak() -> None:
    kl = [0.5, 1.0, 2.0, 4.0]
    found = fit("bon", kl, [0.3 * math.sqrt(k) + 0.01 * k for k in kl])  # still rising faster than linear
    assert found.beta < 0 and found.peak == math.inf
