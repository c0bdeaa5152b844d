"""eval=pass_at_k: the estimators against their closed forms and against brute force over every subset of samples;
metric curves (a suite's family of metrics over k) in the report; and a verifiable task written outside the
repository, with nothing but problems(split) and verify(), through a sweep to the report."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import HARNESS, REPO, job_env
from sweeps import make_job, write_multirun

from harness.declarations import metric_curve_entries
from harness.errors import HarnessError
from harness.report import build_report
from plugins.evals.pass_at_k import bootstrap_interval, maj_at_k, pass_at_k, tabulated_ks


# -- pass@k --------------------------------------------------------------------------------------------------------
def test_pass_at_k_worked_case() -> None:
    """n = 5 samples, c = 2 right. pass@k = 1 - C(3, k) / C(5, k):
    k=1: 1 - 3/5 = 0.4;  k=2: 1 - 3/10 = 0.7;  k=3: 1 - 1/10 = 0.9;  k=4, 5: fewer than k wrong samples, so 1."""
    assert [pass_at_k(5, 2, k) for k in range(1, 6)] == pytest.approx([0.4, 0.7, 0.9, 1.0, 1.0], abs=1e-12)


def brute_pass(n: int, c: int, k: int) -> float:
    """The share of all k-subsets of n samples (the first c right) that hold a right one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in subset) for subset in subsets) / len(subsets)


def test_pass_at_k_is_the_share_of_subsets_with_a_right_sample() -> None:
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_edges() -> None:
    """c = 0: never; c = n: always; k = 1: c / n; nondecreasing in k; large n stays finite (the running product)."""
    assert all(pass_at_k(64, 0, k) == 0.0 for k in range(1, 65))
    assert all(pass_at_k(64, 64, k) == 1.0 for k in range(1, 65))
    assert pass_at_k(64, 16, 1) == pytest.approx(0.25)
    curve = [pass_at_k(1000, 3, k) for k in range(1, 1001)]
    assert all(b >= a for a, b in itertools.pairwise(curve)) and curve[-1] == 1.0
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_tabulated_ks_are_powers_of_two_n_and_the_asked() -> None:
    assert tabulated_ks(64, [1, 4, 16, 64]) == [1, 2, 4, 8, 16, 32, 64]
    assert tabulated_ks(5, [3]) == [1, 2, 3, 4, 5]
    assert tabulated_ks(1, [1]) == [1]


# -- maj@k ---------------------------------------------------------------------------------------------------------
def brute_maj(answers: list[str | None], scores: list[float], k: int) -> float:
    """Every k-subset: the most frequent answer's score (ties: the mean of the tied answers' scores; no answer: 0)."""
    value: dict[str, list[float]] = {}
    for answer, score in zip(answers, scores, strict=True):
        if answer is not None:
            value.setdefault(answer, []).append(score)
    total, subsets = 0.0, list(itertools.combinations(range(len(answers)), k))
    for subset in subsets:
        votes = Counter(answers[i] for i in subset if answers[i] is not None)
        if votes:
            top = max(votes.values())
            tied = [answer for answer, count in votes.items() if count == top]
            total += sum(sum(value[a]) / len(value[a]) for a in tied) / len(tied)
    return total / len(subsets)


def test_maj_at_k_is_the_mean_vote_over_every_subset() -> None:
    """All n <= 8, every k, random answers from three candidates or none, one of them right."""
    rng = np.random.default_rng(0)
    for n in range(1, 9):
        for _ in range(25):
            answers = [None if a == "-" else str(a) for a in rng.choice(["a", "b", "c", "-"], size=n)]
            right = str(rng.choice(["a", "b", "c"]))
            scores = [float(a == right) for a in answers]
            for k in range(1, n + 1):
                assert maj_at_k(answers, scores, k) == pytest.approx(brute_maj(answers, scores, k), abs=1e-12)


def test_maj_at_k_worked_case_and_edges() -> None:
    """Answers a a b c (a right). k=1: 2/4 = 0.5. k=2: C(4,2) = 6 subsets: {a,a} wins (1); {a,b} x2 and {a,c} x2 tie,
    a winning half of each (4 x 0.5 = 2); {b,c} loses (0): 3/6 = 0.5. k=3: {a,a,b}, {a,a,c} win; {a,b,c} x2 tie three
    ways (2 x 1/3): (2 + 2/3)/4 = 2/3. k=4: a wins outright: 1."""
    answers, scores = ["a", "a", "b", "c"], [1.0, 1.0, 0.0, 0.0]
    assert [maj_at_k(answers, scores, k) for k in range(1, 5)] == pytest.approx([0.5, 0.5, 2 / 3, 1.0])
    assert maj_at_k([None] * 4, [0.0] * 4, 2) == 0.0  # no sample answers
    assert maj_at_k(["7"] * 6, [1.0] * 6, 3) == 1.0  # every sample agrees, rightly
    assert maj_at_k(["7"] * 6, [0.0] * 6, 3) == 0.0
    # a right answer outvoted: b, b, b against a, a (a right) -> at k = 5, b wins every time
    assert maj_at_k(["a", "a", "b", "b", "b"], [1, 1, 0, 0, 0], 5) == 0.0
    # n = 64, 40 distinct answers: exact and fast (the dynamic programme, not 64 choose 16 subsets)
    answers64 = [str(i % 40) for i in range(64)]
    value = maj_at_k(answers64, [float(a == "0") for a in answers64], 16)
    assert 0.0 < value < 1.0


def test_bootstrap_interval_stays_in_bounds_and_holds_the_mean() -> None:
    per_problem = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.5]])
    low, high = bootstrap_interval(per_problem, resamples=500, seed=0)
    means = per_problem.mean(axis=0)
    assert np.all(low >= 0.0) and np.all(high <= 1.0)
    assert np.all(low <= means) and np.all(means <= high)
    low, _ = bootstrap_interval(per_problem, resamples=0, seed=0)
    assert np.isnan(low).all()


# -- the declaration ------------------------------------------------------------------------------------------------
def test_a_curve_declaration_is_checked() -> None:
    (entry,) = metric_curve_entries("s", [{"metric": "p_{k}", "x": "k", "low": "p_{k}_low", "table": [1, 4]}])
    assert entry["key"] == "eval/s/p_{k}" and entry["low"] == "eval/s/p_{k}_low" and entry["table"] == [1, 4]
    for bad in (
        {"metric": "p", "x": "k"},  # no {k} in the name
        {"metric": "p_{k}", "x": "k", "low": "p_low"},
        {"metric": "p_{k}", "x": "k", "table": "1, 4"},
        {"metric": "p_{k}", "x": "k", "bounds": [1, 0]},
    ):
        with pytest.raises(HarnessError, match=r"eval\.s\.curves\[0\]"):
            metric_curve_entries("s", [bad])


# -- the report ----------------------------------------------------------------------------------------------------
CURVE = metric_curve_entries(
    "pass_at_k",
    [{"metric": "pass_at_{k}", "x": "k", "label": "pass@k", "log_x": True, "better": "higher", "bounds": [0, 1],
      "low": "pass_at_{k}_low", "high": "pass_at_{k}_high", "table": [1, 4]}],
)  # fmt: skip
HEADLINE = [{"key": "eval/pass_at_k/pass_at_1", "label": "pass@1", "better": "higher", "role": "quality",
             "bounds": [0.0, 1.0]}]  # fmt: skip


def _curve_metrics(c_over_n: float, n: int = 8) -> dict[str, float]:
    metrics = {}
    for k in (1, 2, 4, 8):
        value = pass_at_k(n, round(c_over_n * n), k)
        metrics |= {f"eval/pass_at_k/pass_at_{k}": value, f"eval/pass_at_k/pass_at_{k}_low": max(value - 0.1, 0.0),
                    f"eval/pass_at_k/pass_at_{k}_high": min(value + 0.1, 1.0)}  # fmt: skip
    return metrics


def test_the_report_draws_and_tabulates_a_declared_curve(tmp_path: Path) -> None:
    """sft with two seeds (interval over seeds), dpo with one (the job's own interval, in parentheses)."""
    write_multirun(tmp_path, {"algorithm": "sft,dpo", "seed": "0,1"})
    jobs = [("sft", 0, 0.25), ("sft", 1, 0.5), ("dpo", 0, 0.75)]
    for number, (algorithm, seed, rate) in enumerate(jobs):
        make_job(tmp_path, number, algorithm, seed, _curve_metrics(rate), headline=HEADLINE)
        result = json.loads((path := next(tmp_path.glob(f"{number}_*")) / "result.json").read_text())
        path.write_text(json.dumps(result | {"curves": CURVE}))
    report = build_report(tmp_path)
    table = report.markdown.split("### pass@k at k = 1, 4")[1]
    assert "| algorithm | seeds | pass@1 | pass@4 |" in table
    sft_1 = (0.25 + 0.5) / 2
    assert f"| sft | 2 | {sft_1:.3f} [" in table  # t-interval over two seeds
    assert f"| dpo | 1 | **{pass_at_k(8, 6, 1):.3f} ({pass_at_k(8, 6, 1) - 0.1:.3f}, " in table  # its own interval
    assert "percentile bootstrap over problems" in table
    page = report.html.read_text()
    assert 'id="metric_curves"' in page and "pass@k at k = 1, 4" in page
    assert "metric_curves" in report.files and report.files["metric_curves"].exists()
    assert report.comparison.curves == []  # result.json `curves` holds it, yet it is no training curve
    sft = next(group for group in report.comparison.groups if group.label == "sft")
    assert sft.bounds["eval/pass_at_k/pass_at_8"] == (0.0, 1.0)  # the curve's bounds hold its intervals


# -- a verifiable task from outside the repository, end to end ------------------------------------------------------
NEXT_LETTER = '''
"""Say the letter after a given one: a task with nothing but problems(split) and verify()."""
import random

LETTERS = "abcdefghijklmnopqrstuvwxyz"


class NextLetter:
    def __init__(self, name="next_letter", seed=0, noise=0.4, num_pretrain=1500):
        self.name, self.seed, self.noise, self.num_pretrain = name, seed, noise, num_pretrain

    def problems(self, split):
        rng = random.Random(f"{self.seed}-{split}")
        if split.startswith("pretrain"):  # right with probability 1 - noise: pass@k has room above pass@1
            rows = []
            for _ in range(self.num_pretrain if split == "pretrain" else 100):
                i = rng.randrange(25)
                said = LETTERS[i + 1] if rng.random() >= self.noise else rng.choice(LETTERS)
                rows.append({"text": f"after {LETTERS[i]} comes {said}"})
            return rows
        if split == "sft":
            return [{"prompt": f"after {a} comes", "completion": b} for a, b in zip(LETTERS, LETTERS[1:])]
        if split in ("prompts", "eval_prompts"):
            return [{"prompt": f"after {a} comes", "answer": b} for a, b in zip(LETTERS, LETTERS[1:])]
        return []

    def verify(self, problem, completion):
        return float(completion.split()[:1] == [problem["answer"]])
'''


def test_a_plugin_task_with_only_problems_and_verify_gets_pass_at_k_in_the_report(tmp_path: Path) -> None:
    """The task lives in tmp_path (module on PYTHONPATH, YAML through hydra.searchpath). base and best-of-n ranked by
    the verifier (reward=verifier), eval=[pass_at_k] at debug=smoke (n = 4 samples of each of 25 problems)."""
    package, conf = tmp_path / "package", tmp_path / "conf" / "task"
    package.mkdir()
    conf.mkdir(parents=True)
    (package / "next_letter.py").write_text(textwrap.dedent(NEXT_LETTER))
    (conf / "next_letter.yaml").write_text("_target_: next_letter.NextLetter\nname: next_letter\nseed: 0\n")
    environment = job_env() | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(package), os.environ.get("PYTHONPATH")]))
    }
    args = [
        "-m", "debug=smoke", "algorithm=base,best_of_n", "reward=verifier", "eval=[pass_at_k]", "task=next_letter",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"results_dir={tmp_path / 'results'}", "logger=none",
        "cpu_threads=1",
    ]  # fmt: skip
    done = subprocess.run([str(HARNESS), *args], cwd=REPO, capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["algorithm"]: r for r in map(json.loads, map(Path.read_text, tmp_path.rglob("result.json")))}
    assert set(results) == {"base", "best_of_n"}
    for algorithm, result in results.items():
        assert result["status"] == "complete", result["error"]
        metrics = {k.removeprefix("eval/pass_at_k/"): v for k, v in result["metrics"].items()}
        curve = [metrics[f"pass_at_{k}"] for k in (1, 2, 4)]
        assert all(0.0 <= value <= 1.0 for value in curve) and curve == sorted(curve), (algorithm, curve)
        assert metrics["pass_at_4"] == pytest.approx(metrics["solved"])  # pass@n: solved at least once in n
        assert metrics["pass_at_1"] <= metrics["solved"]
        assert metrics["pass_at_1_low"] <= metrics["pass_at_1"] <= metrics["pass_at_1_high"]
        assert metrics["problems"] == 25 and metrics["samples_per_problem"] == 4
        assert metrics["mean_tokens"] > 0
        assert not any(key.startswith("maj_at") or key.endswith("_hard") or key == "format" for key in metrics)
        assert result["curves"][0]["key"] == "eval/pass_at_k/pass_at_{k}" and result["curves"][0]["x"] == "k"
    assert "entropy" in {k.removeprefix("eval/pass_at_k/") for k in results["base"]["metrics"]}  # one model
    (sweep,) = {path.parent for path in tmp_path.rglob("comparison.md")}
    for job in ("base", "best_of_n"):  # the extra split the task lacks: skipped, said in each job's log
        assert "no 'hard_prompts' split" in next(sweep.glob(f"*_{job}_seed0/app.log")).read_text()
    samples = [json.loads(line) for line in next(sweep.glob("*_base_*/samples.jsonl")).read_text().splitlines()]
    assert {"correct"} <= set(samples[0]) and all(row["correct"] in (0.0, 1.0) for row in samples)
    markdown = (sweep / "comparison.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| algorithm"))
    assert "| pass@1 |" in header and "| solved in 4 |" in header
    assert "### pass@k at k = 1, 2, 4" in markdown
    page = (sweep / "report.html").read_text()
    assert 'id="metric_curves"' in page and "pass@k at k = 1, 2, 4" in page
    assert (sweep / "metric_curves.png").exists()
    assert '"correct"' in page  # the sample browser shows each verdict


def test_the_sample_browser_shows_the_verdicts() -> None:
    """The verifier's columns: `correct` is the quality score the browser sorts by (no gold reward here), the final
    answer shows as text, the format reward as a number."""
    from harness.report.samples import JobSamples, align, page_data

    def rows(answers: list[str | None]) -> list[dict]:
        return [
            {"prompt": f"q{i}", "completion": f"answer {a}", "completion_tokens": 2, "correct": float(a == "1"),
             "format": 1.0, "answer": a}
            for i, a in enumerate(answers)
        ]  # fmt: skip

    table = align([JobSamples("sft", "0", rows(["1", "2"])), JobSamples("grpo", "0", rows(["1", None]))])
    assert table.quality == "correct"
    assert table.scores[:3] == ["correct", "answer", "format"]
    assert table.kinds["answer"] == "text" and table.kinds["correct"] == "float"
    assert table.spread(0, "0") == 0.0 and table.spread(1, "0") == 0.0
    data = page_data(table)
    assert data["labels"][:3] == ["correct (verifier)", "final answer", "format reward"]
    assert data["prompts"][1]["samples"][0][0]["s"][:2] == [0.0, "2"]
    assert data["prompts"][1]["samples"][0][1]["s"][:2] == [0.0, None]


def test_ks_above_n_are_left_out() -> None:
    """`eval.pass_at_k.n=16` alone works: the default ks' 64 is dropped, not an error."""
    from plugins.evals.pass_at_k import PassAtKEval

    assert PassAtKEval(n=16, ks=[1, 4, 16, 64]).ks == [1, 4, 16]
