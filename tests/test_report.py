"""The comparison report on hand-made sweeps: known statistics, missing and failed jobs, identical rebuilds,
the W&B comparison run (offline), the `harness-report` command, and report.html in a real browser."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import logged_comparison_offline
from sweeps import GROUP, make_job, write_multirun

from harness.errors import HarnessError
from harness.report import build_report
from harness.report.aggregate import load_sweep, paired, summarise
from harness.report.plots import pareto

REPORT = Path(sys.executable).parent / "harness-report"
T_975_DF2 = 4.302653  # Student t quantile 0.975 with 2 degrees of freedom (any t table)
SFT = [0.60, 0.65, 0.70]
DPO = [0.70, 0.80, 0.75]
# what conf/algorithm/ppo.yaml declares under `curves:`
PPO_CURVES = [
    {"key": "objective/score", "label": "proxy score", "role": "proxy"},
    {"key": "objective/gold_score", "label": "gold score", "role": "quality"},
]


def _metrics(reward: float, seed: int, proxy: float | None = None) -> dict[str, float]:
    metrics = {
        "eval/gold/reward": reward,
        "eval/gold/grammatical": 0.9,
        "eval/kl/seq_kl": 0.5 + 0.1 * seed,
        "eval/diversity/distinct_2": 0.1,
    }
    if proxy is not None:
        metrics["eval/gold/proxy_reward"] = proxy
    return metrics


@pytest.fixture
def complete_sweep(tmp_path: Path) -> Path:
    """sft and dpo over seeds 0-2 with the rewards above; ppo with a proxy reward and training curves."""
    write_multirun(tmp_path, {"algorithm": "sft,dpo,ppo", "seed": "0,1,2"})
    number = 0
    for algorithm, rewards in (("sft", SFT), ("dpo", DPO), ("ppo", [0.85, 0.8, 0.9])):
        for seed, reward in enumerate(rewards):
            proxy = 1.0 + seed if algorithm == "ppo" else None
            curves = None
            if algorithm == "ppo":
                curve = [(step, {"objective/score": 0.1 * step, "objective/gold_score": 0.5}) for step in (1, 2)]
                curves = PPO_CURVES
            else:  # no curves declared: the report plots the loss
                curve = [(step, {"loss": 2.0 - 0.1 * step}) for step in (10, 20, 30)]
            make_job(tmp_path, number, algorithm, seed, _metrics(reward, seed, proxy), curve=curve, curves=curves)
            number += 1
    return tmp_path


def _rows(text: str) -> dict[str, dict[str, str]]:
    return {row["group"]: row for row in csv.DictReader(io.StringIO(text))}


def test_mean_and_t_interval_of_known_values() -> None:
    """sft rewards 0.60, 0.65, 0.70: mean 0.65, sample std 0.05, standard error 0.05 / sqrt(3) = 0.028868;
    95% t-interval 0.65 -/+ 4.302653 * 0.028868 = 0.65 -/+ 0.124208 = [0.525792, 0.774208]."""
    s = summarise(SFT)
    half = T_975_DF2 * 0.05 / math.sqrt(3)
    assert (s.n, s.mean, s.std) == (3, pytest.approx(0.65), pytest.approx(0.05))
    assert (s.ci_low, s.ci_high) == (pytest.approx(0.65 - half, abs=1e-6), pytest.approx(0.65 + half, abs=1e-6))
    one = summarise([0.7])
    assert one.mean == 0.7 and math.isnan(one.ci_low) and math.isnan(one.std)  # no interval from one seed


def test_paired_difference_of_known_values() -> None:
    """dpo - sft by seed: 0.10, 0.15, 0.05: mean 0.10, std 0.05, so the same half-width 0.124208:
    [-0.024208, 0.224208]; t = 0.10 / 0.028868 = 3.4641 on 2 df, two-sided p = 0.0742."""
    d = paired(dict(enumerate(DPO)), dict(enumerate(SFT)))
    assert (d.n, d.diff) == (3, pytest.approx(0.10))
    assert d.ci_low == pytest.approx(0.10 - 0.124208, abs=1e-5)
    assert d.ci_high == pytest.approx(0.10 + 0.124208, abs=1e-5)
    assert d.p_value == pytest.approx(0.0742, abs=1e-3)
    only_shared = paired({0: 0.7, 5: 0.9}, {0: 0.6, 1: 0.6})  # pairs only seeds both have
    assert only_shared.n == 1 and only_shared.diff == pytest.approx(0.1)


def test_report_files_and_numbers(complete_sweep: Path) -> None:
    report = build_report(complete_sweep)
    for name in ("comparison.csv", "comparison.md", "report.html", "frontier.png", "training_curves.png"):
        assert (complete_sweep / name).stat().st_size > 0, name
    rows = _rows(report.csv)
    assert list(rows) == ["sft", "dpo", "ppo"]
    dpo = rows["dpo"]
    assert float(dpo["eval/gold/reward/mean"]) == pytest.approx(0.75)
    assert float(dpo["eval/gold/reward/ci_low"]) == pytest.approx(0.75 - 0.124208, abs=1e-5)
    assert float(dpo["eval/gold/reward/diff_vs_sft/mean"]) == pytest.approx(0.10)
    assert (dpo["complete"], dpo["failed"], dpo["missing"], dpo["seeds"]) == ("3", "0", "0", "0 1 2")
    assert rows["sft"]["eval/gold/reward/diff_vs_sft/mean"] == ""  # the baseline is not compared with itself
    assert float(dpo["cost/train_s/mean"]) == pytest.approx(31.0)  # its own stage: 30, 31, 32 seconds
    # the columns the suites declare, in their declared order (win rate: no job reports it), Δ after quality
    columns = ["gold reward", "Δ gold reward vs sft", "grammatical", "KL (nats)", "proxy reward", "distinct-2"]
    header = "| " + " | ".join(["algorithm", "seeds", *columns]) + " |"
    assert header in report.markdown
    assert "KL is to the policy a method started from (SFT;" in report.markdown  # the kl suite's note, in the caption
    # the markdown marks the best mean per metric: ppo on gold reward (0.85)
    assert "| ppo | 3 | **0.850 [" in report.markdown
    assert "+0.100 [-0.024, +0.224]" in report.markdown


def test_rebuilding_gives_identical_csv(complete_sweep: Path) -> None:
    first = build_report(complete_sweep).csv
    (complete_sweep / "comparison.csv").unlink()
    assert build_report(complete_sweep).csv == first
    assert (complete_sweep / "comparison.csv").read_text() == first


def test_failed_and_missing_jobs_are_reported_not_dropped(tmp_path: Path) -> None:
    """Asked for: sft, dpo x seeds 0-3. dpo seed 1 failed, dpo seed 2 was killed (folder, no result),
    and nothing at all exists for dpo seed 3 or sft seed 3 (never started)."""
    write_multirun(tmp_path, {"algorithm": "sft,dpo", "seed": "0,1,2,3"})
    for seed, reward in enumerate(SFT):
        make_job(tmp_path, seed, "sft", seed, _metrics(reward, seed))
    make_job(tmp_path, 4, "dpo", 0, _metrics(0.7, 0))
    make_job(tmp_path, 5, "dpo", 1, {}, status="failed")
    make_job(tmp_path, 6, "dpo", 2, {}, status="missing")
    report = build_report(tmp_path)
    rows = _rows(report.csv)
    assert (rows["sft"]["complete"], rows["sft"]["missing"]) == ("3", "1")
    assert (rows["dpo"]["complete"], rows["dpo"]["failed"], rows["dpo"]["missing"]) == ("1", "1", "2")
    assert rows["dpo"]["eval/gold/reward/n"] == "1"
    assert report.failed_or_missing == 4
    assert "| dpo | 1/4 |" in report.markdown
    assert "**failed**: algorithm=dpo seed=1: HarnessError: the loss went NaN" in report.markdown
    killed = "**missing**: algorithm=dpo seed=2: no result.json in 6_dpo_seed2: killed or still running"
    assert killed in report.markdown
    assert "**missing**: algorithm=dpo seed=3: never started" in report.markdown
    assert "Jobs without a result" in (tmp_path / "report.html").read_text()


def test_swept_hyperparameters_make_their_own_groups(tmp_path: Path) -> None:
    write_multirun(tmp_path, {"algorithm": "dpo,ppo", "kl_beta": "0.1,1.0", "seed": "0"})
    for number, (algorithm, beta, reward) in enumerate(
        [("dpo", "0.1", 0.8), ("dpo", "1.0", 0.7), ("ppo", "0.1", 0.9), ("ppo", "1.0", 0.75)]
    ):
        make_job(tmp_path, number, algorithm, 0, _metrics(reward, 0), extra_overrides=(f"kl_beta={beta}",))
    sweep = load_sweep(tmp_path)
    labels = ["dpo kl_beta=0.1", "dpo kl_beta=1.0", "ppo kl_beta=0.1", "ppo kl_beta=1.0"]
    assert [g.label for g in sweep.groups] == labels
    report = build_report(tmp_path)
    assert report.comparison.baseline is None  # no sft in this sweep: no paired column
    assert _rows(report.csv)["ppo kl_beta=0.1"]["kl_beta"] == "0.1"
    assert report.failed_or_missing == 0


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(0.2, 0.4), (0.1, 0.5), (0.3, 0.6), (0.3, 0.7), (0.5, 0.65)]
    assert pareto(points) == [(0.1, 0.5), (0.3, 0.7)]


def test_not_a_directory_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a directory"):
        load_sweep(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HarnessError, match=r"no result\.json"):
        load_sweep(empty)


def test_harness_report_command(complete_sweep: Path, tmp_path: Path) -> None:
    done = subprocess.run([str(REPORT), str(complete_sweep)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| dpo | 3 |" in done.stdout and f"report: {complete_sweep / 'report.html'}" in done.stdout
    bad = subprocess.run([str(REPORT), str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "is not a directory" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_comparison_is_logged_as_a_wandb_run_offline(complete_sweep: Path, tmp_path: Path) -> None:
    report = build_report(complete_sweep)
    run_dir, run = logged_comparison_offline(report, tmp_path / "wandb_out")
    assert (run["job_type"], run["group"], run["name"]) == ("comparison", GROUP, "handmade-comparison")
    logged = {key: value for row in run["history"] for key, value in row.items()}  # media: nested keys, flattened
    assert logged["comparison/table/_type"] == "table-file" and logged["comparison/table/nrows"] == 3
    assert {logged[f"comparison/{name}/_type"] for name in ("frontier", "metrics", "cost")} == {"image-file"}
    table = json.loads((run_dir / "files" / logged["comparison/table/path"]).read_text())
    column = table["columns"].index("eval/gold/reward/mean")
    assert {row[0]: row[column] for row in table["data"]}["dpo"] == pytest.approx(0.75)
    assert run["summary"]["dpo/eval/gold/reward"] == pytest.approx(0.75)


def test_report_renders_in_a_real_browser(complete_sweep: Path) -> None:
    from browser import chromium_page, render_report

    report = build_report(complete_sweep)
    figures = [name for name, path in report.files.items() if path.suffix == ".png"]
    assert set(figures) == {"frontier", "metrics", "proxy_vs_quality", "training_curves", "cost"}
    with chromium_page() as page:
        seen = render_report(page, report.html)
    (table,) = seen["tables"]
    assert table["rows"] == 3 and table["headers"][:3] == ["algorithm", "seeds", "gold reward"]
    assert len(seen["images"]) == len(figures)
    for image in seen["images"]:
        assert image["scheme"] == "data" and image["complete"], image
        assert image["naturalWidth"] > 100 and image["naturalHeight"] > 100, image
    assert seen["requests"] == [] and seen["failed_requests"] == [] and seen["console_errors"] == []


def test_a_failing_job_does_not_stop_the_sweep(tmp_path: Path) -> None:
    """`algorithm=checkpoint` without a path fails at once; the base job after it still runs, the report
    lists the failure, and `harness` exits 1 with one-line errors and no traceback."""
    from conftest import run_harness

    from harness.results import read_results

    done = run_harness(
        "-m", "algorithm=checkpoint,base", "seed=0", "debug=smoke", "logger=none", "eval=[gold]",
        f"results_dir={tmp_path}",
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "error: algorithm.path is not set" in done.stderr and "Traceback" not in done.stderr
    assert "warning: 1 job(s) failed or are missing" in done.stderr
    statuses = {r["algorithm"]: (r["status"], r["error"]) for r in read_results(tmp_path / "sweeps")}
    assert statuses["base"] == ("complete", None)
    assert statuses["checkpoint"][0] == "failed" and "algorithm.path is not set" in statuses["checkpoint"][1]
    # the reason once on the terminal (the error line above), and in comparison.md's list, which the end of the
    # sweep names among what the file holds beyond the table
    (sweep_dir,) = (tmp_path / "sweeps" / "default").iterdir()
    comparison = (sweep_dir / "comparison.md").read_text()
    assert "**failed**: algorithm=checkpoint seed=0: algorithm.path is not set" in comparison
    assert "Jobs without a result" in done.stdout


def test_every_algorithm_of_a_zoo_gets_its_own_colour() -> None:
    from types import SimpleNamespace

    from harness.report.plots import _colours

    for count in (6, 15):
        groups = [SimpleNamespace(algorithm=f"method{i}") for i in range(count)]
        assert len(set(_colours(groups).values())) == count


# -- judges named in the report -----------------------------------------------------------------------------
def _judged_sweep(root: Path, by_gold: bool) -> Path:
    """sft, dpo, ppo, best_of_n over seeds 0-1. Gold rewards rank them sft < dpo < best_of_n < ppo; the held-out
    judge's win rates (0.50, 0.60, 0.70, 0.65) rank dpo and best_of_n the same but swap ppo and best_of_n; ppo and
    best_of_n optimised the training RM, whose own win rates for them are 0.90 and 0.95."""
    from sweeps import suite_headline

    write_multirun(root, {"algorithm": "sft,dpo,ppo,best_of_n", "seed": "0,1"})
    gold = {"sft": 0.40, "dpo": 0.50, "ppo": 0.70, "best_of_n": 0.60}
    judged = {"sft": 0.50, "dpo": 0.60, "ppo": 0.65, "best_of_n": 0.70}
    proxy = {"ppo": 0.90, "best_of_n": 0.95}
    for number, (algorithm, seed) in enumerate((a, s) for a in gold for s in (0, 1)):
        optimised = algorithm in proxy
        metrics = {
            "eval/gold/reward": gold[algorithm] + 0.01 * seed,
            "eval/win_rate/rate": judged[algorithm],
            "eval/win_rate/judged_by_gold": float(by_gold),
            "eval/win_rate/judged_by_optimised_reward": float(optimised and not by_gold),
            "eval/judge/rate": judged[algorithm],
            "eval/judge/lc_rate": judged[algorithm],
            **({"eval/judge/proxy_rate": proxy[algorithm]} if optimised else {}),
        }
        headline = suite_headline(("gold", "win_rate", "judge"))
        make_job(root, number, algorithm, seed, metrics, headline=headline)
    return root


def test_a_win_rate_judged_by_the_reward_it_optimised_is_labelled(tmp_path: Path) -> None:
    """Without gold, eval=win_rate is judged by the training reward: its column says so, and the rows of the methods
    that optimised that reward (ppo, best_of_n) carry the dagger the caption explains."""
    report = build_report(_judged_sweep(tmp_path, by_gold=False))
    header = report.markdown.splitlines()[2]
    assert "| win rate (judge: training reward) |" in header
    assert "| win rate (judge: held-out RM) | LC win rate (judge: held-out RM) |" in header
    assert "| win rate (judge: the reward it optimised) |" in header
    table = report.markdown.split("###")[0].splitlines()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table if line.startswith("| ")}
    assert "0.650 [0.650, 0.650] †" in rows["ppo"] and "0.600 [0.600, 0.600] †" not in rows["dpo"]
    assert "† judged by the reward it optimised (not an independent judge)." in report.markdown
    assert "win rate (judge: training reward)" in (tmp_path / "report.html").read_text()


def test_a_win_rate_judged_by_gold_says_so(tmp_path: Path) -> None:
    report = build_report(_judged_sweep(tmp_path, by_gold=True))
    assert "| win rate (judge: gold) |" in report.markdown.splitlines()[2]
    assert "†" not in report.markdown


def test_judges_are_checked_against_gold(tmp_path: Path) -> None:
    """Group means, gold: sft 0.405, dpo 0.505, ppo 0.705, best_of_n 0.605 (ranks 1, 2, 4, 3); held-out judge:
    0.50, 0.60, 0.65, 0.70 (ranks 1, 2, 3, 4). Spearman ρ = 1 - 6 Σd² / (n(n² - 1)) = 1 - 6·2 / 60 = 0.8.
    Over-optimisation: ppo 0.90 by the reward it optimised vs 0.65 held out (+0.25), best_of_n 0.95 vs 0.70."""
    from harness.report.tables import judge_check

    report = build_report(_judged_sweep(tmp_path, by_gold=True))
    checks = {check.metric.key: check for check in judge_check(report.comparison)}
    assert set(checks) == {"eval/judge/rate", "eval/judge/lc_rate"}  # the suite with proxy_rate: a held-out judge
    assert checks["eval/judge/rate"].spearman == pytest.approx(0.8)
    assert checks["eval/judge/rate"].gaps == [("ppo", 0.90, 0.65), ("best_of_n", 0.95, 0.70)]
    assert "### Judges against gold reward" in report.markdown
    assert "- win rate (judge: held-out RM): Spearman ρ = 0.80 with gold reward (group means, 4 groups)." in (
        report.markdown
    )
    gap = "- ppo: win rate judged by the reward it optimised 0.900 vs win rate (judge: held-out RM) 0.650 (gap +0.250)."
    assert gap in report.markdown
    assert "Judges against gold reward" in (tmp_path / "report.html").read_text()
