"""`eval=pass_at_k`: how often the policy solves a problem within k tries, for a task whose answers can be checked.

The suite samples `n` completions of every evaluation problem with the evaluation's own settings (a procedure such as
best-of-n draws each its own way), checks each with the task's verifier (`run.verifier()`, harness/verifiable.py), and
reports, with `c` the samples of a problem that pass (verify gives full credit, 1):

- `pass_at_<k>`: the unbiased pass@k of Chen et al. 2021 (Codex, eq. 1), 1 - C(n-c, k) / C(n, k), the chance that
  at least one of k samples drawn without replacement from the n passes, averaged over problems; for every power of
  two up to n, n itself and each k of `ks`. `pass_at_<k>_low`/`_high`: its 95% percentile-bootstrap interval over
  problems (the problems resampled; it stays inside [0, 1]): the job's own uncertainty from its finite problem set,
  which the report shows where a method has one seed.
- `maj_at_<k>` for each k of `ks` (tasks with `final_answer`): majority voting (Wang et al. 2023, self-consistency),
  the score of the most frequent final answer among k samples, averaged exactly over all C(n, k) subsets of the n
  samples (ties split evenly among the tied answers; a subset where no sample gives an answer scores 0). With its
  bootstrap interval as for pass@k.
- `solved`: share of problems solved at least once in n (= pass@n); `score`: mean verify score of all samples (the
  partial credit a task gives, where pass@1 counts only full credit); `format`: mean format reward of all samples
  (tasks with `format_reward`); `answered`: share of samples that give a final answer (tasks with `final_answer`);
  `mean_tokens`: mean completion length of the n samples in tokens; `entropy`: mean per-token entropy of the policy
  along the shared evaluation samples (one per problem, `context.policy_logprobs()`, as eval/diversity reads it; not
  for a procedure such as best-of-n, which is no one model).
- the same for each split of `extra_splits` (a harder held-out split), suffixed `_<name>`: `pass_at_1_hard`. A task
  without that split is skipped with a log line.

The shared one-per-prompt samples are annotated with `correct` (verify's score), `format` and `answer`, so
samples.jsonl and the report's sample browser show each verdict.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.api import EvalContext, HarnessError

log = logging.getLogger(__name__)

RECORDS_FILE = "pass_at_k.jsonl"  # each problem's right samples, in the job's folder (plugins/evals/reach.py reads it)


# -- the estimators -------------------------------------------------------------------------------------------------
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass (Chen et al. 2021, eq. 1): 1 - C(n-c, k) / C(n, k), as their
    numerically stable running product 1 - prod_{i=n-c+1}^{n} (1 - k/i); 1 when fewer than k samples fail."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k(n={n}, c={c}, k={k}): expected 0 <= c <= n and 1 <= k <= n")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def maj_at_k(answers: Sequence[str | None], scores: Sequence[float], k: int) -> float:
    """Majority voting over k of the n samples, averaged exactly over all C(n, k) subsets: the mean score of the
    answer most frequent in the subset (ties split evenly among the tied answers; a subset in which no sample gives
    an answer, None, scores 0). An answer's score is the mean verify score of the samples that give it.

    For an answer of m samples to win with t of them drawn, every other answer needs fewer than t drawn, or t (a
    tie); samples without an answer fill the rest freely. Counting those subsets is a product of binomials, summed
    by dynamic programming over the other answers (state: samples drawn so far, answers tied so far). The count
    depends on the answer's m alone, so answers of equal size share it."""
    n = len(answers)
    if len(scores) != n or not 1 <= k <= n:
        raise ValueError(f"maj_at_k: {n} answers, {len(scores)} scores, k={k}; expected as many and 1 <= k <= n")
    by_answer: dict[str, list[float]] = {}
    for answer, score in zip(answers, scores, strict=True):
        if answer is not None:
            by_answer.setdefault(answer, []).append(float(score))
    sizes = [len(group) for group in by_answer.values()]
    unanswered = n - sum(sizes)
    wins: dict[int, float] = {}
    total = 0.0
    for group in by_answer.values():
        value = statistics.fmean(group)
        if value == 0.0:
            continue
        size = len(group)
        if size not in wins:
            others = list(sizes)
            others.remove(size)
            wins[size] = _winning_subsets(size, others, unanswered, k)
        total += value * wins[size]
    return total / math.comb(n, k)


def _winning_subsets(size: int, others: Sequence[int], unanswered: int, k: int) -> float:
    """Subsets of k samples in which an answer of `size` samples wins the vote, each tie counting 1 / (answers tied)."""
    total = 0.0
    for t in range(1, min(size, k) + 1):
        rest = k - t
        most_ties = rest // t
        ways = np.zeros((rest + 1, most_ties + 1))  # [drawn so far, other answers tied at t]
        ways[0, 0] = 1.0
        for m in others:
            after = np.zeros_like(ways)
            for x in range(min(m, t, rest) + 1):
                weight = math.comb(m, x)
                if x < t:
                    after[x:, :] += weight * ways[: rest + 1 - x, :]
                else:  # x == t (so t <= rest): one more answer tied with this one
                    after[x:, 1:] += weight * ways[: rest + 1 - x, :-1]
            ways = after
        # the samples without an answer fill the rest: C(unanswered, rest - drawn) ways
        fill = np.array([math.comb(unanswered, rest - drawn) for drawn in range(rest + 1)], dtype=float)
        by_ties = fill @ ways  # [answers tied]: subsets of k with this answer at t
        total += math.comb(size, t) * float((by_ties / np.arange(1, most_ties + 2)).sum())
    return total


def bootstrap_interval(
    per_problem: np.ndarray, resamples: int, seed: int, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of the mean over problems (rows), for each column at once: the problems
    resampled with replacement `resamples` times. It stays within the values' own range ([0, 1] for a rate)."""
    values = np.asarray(per_problem, dtype=float)
    if resamples <= 0 or len(values) < 2:
        return np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[picks].mean(axis=1)  # [resample, column]
    tail = (1.0 - confidence) / 2 * 100
    return np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)


def tabulated_ks(n: int, ks: Sequence[int]) -> list[int]:
    """The k pass@k is stored at: every power of two up to n, n itself, and each k asked for (up to n)."""
    powers = {2**e for e in range(n.bit_length()) if 2**e <= n}
    return sorted(powers | {n} | {k for k in ks if k <= n})


# -- the suite -----------------------------------------------------------------------------------------------------
class PassAtKEval:
    def __init__(
        self,
        name: str = "pass_at_k",
        n: int = 64,
        ks: Sequence[int] = (1, 4, 16, 64),
        num_problems: int | None = None,
        extra_splits: Mapping[str, str] | None = None,
        bootstrap_resamples: int = 1000,
        bootstrap_seed: int = 0,
    ) -> None:
        self.name = name
        self.n = int(n)  # samples per problem
        self.ks = [int(k) for k in ks]  # where maj@k is measured and the report tabulates pass@k
        self.num_problems = num_problems  # the first N evaluation problems; None: all
        self.extra_splits = dict(extra_splits or {})  # metric suffix -> the task's split (hard: hard_prompts)
        self.bootstrap_resamples = int(bootstrap_resamples)
        self.bootstrap_seed = int(bootstrap_seed)
        self._records: list[dict[str, Any]] = []  # each problem's right samples, for pass_at_k.jsonl
        if above := [k for k in self.ks if k > self.n]:  # `eval.pass_at_k.n=16` alone keeps working
            log.warning("eval.%s.ks: %s above n=%d left out (k samples of n need k <= n)", name, above, self.n)
            self.ks = [k for k in self.ks if k <= self.n]

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        if context.run is None:
            raise HarnessError(f"eval {self.name}: needs the job's run to reach the task's verifier")
        verifier = context.run.verifier()  # a one-line error for a task that cannot check its answers
        self._annotate(context, verifier)
        prompts = context.prompts[: self.num_problems] if self.num_problems is not None else list(context.prompts)
        self._records = []
        metrics = self._measure(context, verifier, prompts, "eval")
        if context.completion_ids is not None and context.model is not None:
            _, entropies = context.policy_logprobs()
            flat = [h for row in entropies for h in row]
            metrics["entropy"] = statistics.fmean(flat) if flat else 0.0
        for suffix, split in self.extra_splits.items():
            try:
                extra = list(context.run.load_split(split)["prompt"])
            except HarnessError:
                log.info("eval %s: task %s has no %r split; its _%s metrics are skipped", self.name,
                         context.run.task.name, split, suffix)  # fmt: skip
                continue
            extra = extra[: self.num_problems] if self.num_problems is not None else extra
            found = self._measure(context, verifier, extra, suffix)
            metrics.update({f"{key}_{suffix}": value for key, value in found.items()})
        self._write_records(context)
        return metrics

    def _write_records(self, context: EvalContext) -> None:
        """Each problem's count of right samples in `<job>/pass_at_k.jsonl` (which problems a policy reaches at all:
        experiment=yue compares them across policies). The job evaluates its final policy first and the snapshots
        along training after it, so the first evaluation's file is kept."""
        from harness.api import atomic_write_jsonl

        assert context.run is not None
        path = context.run.output_dir / RECORDS_FILE
        if not path.exists():
            atomic_write_jsonl(path, self._records)

    @staticmethod
    def _annotate(context: EvalContext, verifier: Any) -> None:
        """The shared samples' verdicts, for samples.jsonl and the report's sample browser."""
        context.annotate("correct", verifier.verify(context.prompts, context.completions))
        if (shape := verifier.format(context.prompts, context.completions)) is not None:
            context.annotate("format", shape)
        if (answers := verifier.answers(context.prompts, context.completions)) is not None:
            context.annotate("answer", answers)

    def _measure(
        self, context: EvalContext, verifier: Any, prompts: Sequence[str], split: str = "eval"
    ) -> dict[str, float]:
        n = self.n
        expanded = [prompt for prompt in prompts for _ in range(n)]
        completions, lengths = self._sample(context, expanded)
        scores = verifier.verify(expanded, completions)
        per_problem = [scores[i * n : (i + 1) * n] for i in range(len(prompts))]
        passed = [sum(score >= 1.0 for score in row) for row in per_problem]
        self._records.extend(
            {"split": split, "prompt": p, "right": c, "n": n} for p, c in zip(prompts, passed, strict=True)
        )
        ks = tabulated_ks(n, self.ks)
        columns = {f"pass_at_{k}": [pass_at_k(n, c, k) for c in passed] for k in ks}
        answers = verifier.answers(expanded, completions)
        if answers is not None:
            for k in self.ks:
                columns[f"maj_at_{k}"] = [
                    maj_at_k(answers[i * n : (i + 1) * n], per_problem[i], k) for i in range(len(prompts))
                ]
        table = np.array(list(columns.values())).T  # [problem, metric]
        low, high = bootstrap_interval(table, self.bootstrap_resamples, self.bootstrap_seed)
        metrics: dict[str, float] = {}
        for index, key in enumerate(columns):
            metrics[key] = float(table[:, index].mean())
            if not math.isnan(low[index]):
                metrics[f"{key}_low"], metrics[f"{key}_high"] = float(low[index]), float(high[index])
        metrics["solved"] = statistics.fmean(float(c > 0) for c in passed)
        metrics["score"] = statistics.fmean(scores)
        if (shape := verifier.format(expanded, completions)) is not None:
            metrics["format"] = statistics.fmean(shape)
        if answers is not None:
            metrics["answered"] = statistics.fmean(float(a is not None) for a in answers)
        metrics["mean_tokens"] = statistics.fmean(lengths)
        metrics["problems"] = float(len(prompts))
        metrics["samples_per_problem"] = float(n)
        return metrics

    def _sample(self, context: EvalContext, prompts: list[str]) -> tuple[list[str], list[int]]:
        from harness.api import sample_completions

        if context.policy.sampler is not None:  # a procedure (best-of-n): each sample drawn the way it draws them
            drawn = context.policy.sampler(prompts, context.generation, context.device)
            return list(drawn[0]), list(drawn[1])
        if context.model is None:
            raise HarnessError(f"eval {self.name}: no policy model to sample")
        samples = sample_completions(context.model, context.tokenizer, prompts, context.generation, context.device)
        return samples.completions, samples.lengths
