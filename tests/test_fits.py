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


def test_the_report_fits_each_proxy_from_its_gains_over_the_baseline(tmp_path) -> None:
    """A hand-made gao sweep: sft (gold 0.40, 0.42 by seed), best-of-n and PPO against two proxies, their points made
    from known alpha, beta on top of each seed's SFT. The report recovers them per proxy, from final points and
    points along training together, and draws the figure."""
    import json

    import yaml
    from sweeps import make_job, write_multirun

    from harness.report import build_report

    reward, kl_key = "eval/gold/reward", "eval/kl/seq_kl"
    write_multirun(tmp_path, {"algorithm": "sft,best_of_n,ppo", "reward.trainer.max_steps": "10,-1", "seed": "0,1"})
    multirun = yaml.safe_load((tmp_path / "multirun.yaml").read_text())
    multirun["hydra"]["callbacks"]["report"]["fits"] = {"best_of_n": "bon", "ppo": "rl"}
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    start = {0: 0.40, 1: 0.42}
    truth = {("best_of_n", "10"): (0.30, 0.20), ("best_of_n", "-1"): (0.35, 0.10),
             ("ppo", "10"): (0.25, 0.20), ("ppo", "-1"): (0.30, 0.08)}

    def gain(algorithm: str, steps: str, kl: float) -> float:
        alpha, beta = truth[(algorithm, steps)]
        d = math.sqrt(kl)
        return d * (alpha - beta * (d if algorithm == "best_of_n" else math.log(d)))

    def point(algorithm: str, steps: str, seed: int, kl: float) -> dict[str, float]:
        return {reward: start[seed] + gain(algorithm, steps, kl), kl_key: kl}

    number = 0
    for seed in (0, 1):
        for steps in ("10", "-1"):
            make_job(tmp_path, number, "sft", seed, {reward: start[seed], kl_key: 0.0},
                     extra_overrides=(f"reward.trainer.max_steps={steps}",))
            number += 1
            for algorithm, kls in (("best_of_n", [0.19, 0.6, 1.2, 1.83]), ("ppo", [0.3, 1.0, 2.5, 4.0])):
                *along, final = kls
                folder = make_job(tmp_path, number, algorithm, seed,
                                  {reward: start[seed] + gain(algorithm, steps, final), kl_key: final},
                                  extra_overrides=(f"reward.trainer.max_steps={steps}",))
                result = json.loads((folder / "result.json").read_text())
                result["trajectory"] = [
                    {"step": i, "fraction": i / 4, "metrics": point(algorithm, steps, seed, k)}
                    for i, k in enumerate(along, 1)
                ]
                (folder / "result.json").write_text(json.dumps(result))
                number += 1
    report = build_report(tmp_path)
    section = report.markdown[report.markdown.index("### Over-optimisation fits") :]
    for (algorithm, steps), (alpha, beta) in truth.items():
        form = "d (alpha - beta d)" if algorithm == "best_of_n" else "d (alpha - beta log d)"
        row = f"| {algorithm} reward.trainer.max_steps={steps} | {form} | {alpha:.3f} | {beta:.3f} | 1.00 | 8 |"
        assert row in section, section
    assert "gained over sft (paired by seed)" in section
    assert (tmp_path / "overoptimisation.png").stat().st_size > 0
