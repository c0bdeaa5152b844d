"""Tasks whose answers can be checked: a verifier where other tasks have a reward model or a gold reward.

A task is verifiable when it defines

    verify(problem, completion) -> float      # 1.0 right, 0.0 wrong (a bool is fine; partial credit in [0, 1])

where `problem` is a row of one of its prompt splits as the task wrote it: `prompt` plus whatever the check needs
(`answer`, say). Two more are optional:

    format_reward(problem, completion) -> float   # in [0, 1]: the completion has the shape asked for (an answer
                                                   # line, a \\boxed{}): reported apart from correctness
    final_answer(problem, completion) -> str | None   # the answer it gives, normalised so that equal answers are
                                                      # equal strings: maj@k votes on it (None: no answer given)

A task may provide nothing but problems: `problems(split) -> list[dict]` for each split it has (`prompts` for
training, `eval_prompts` for the tables, `validation_prompts` for tuning, `sft` rows with a `completion`, `pretrain`
rows with `text`; `splits` names them when not all) and `verify`. The harness writes its datasets (`ProblemSet`).

`Run.verifier()` hands suites and rewards a `Verifier`: it is called with prompts as the policies read them (a chat
template applied) and finds each prompt's problem row, so a reward, a suite and a sample browser all see the same
verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

PROBLEM_SPLITS = ("pretrain", "pretrain_heldout", "sft", "prompts", "eval_prompts", "validation_prompts")


def is_verifiable(task: Any) -> bool:
    return callable(getattr(task, "verify", None))


def is_problem_set(task: Any) -> bool:
    """A task that gives problems and a verifier and leaves writing its datasets to the harness."""
    return is_verifiable(task) and callable(getattr(task, "problems", None)) and not hasattr(task, "build_datasets")


class ProblemSet:
    """A `Task` made of a plugin's `problems(split)` and `verify(problem, completion)`: its datasets are those rows,
    one split each; every other attribute (`verify`, `format_reward`, `final_answer`, `label_pairs`...) is the
    plugin's own."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = str(getattr(inner, "name", type(inner).__name__))

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)

    def gold(self) -> None:
        return None

    def build_datasets(self, out_dir: Path) -> dict[str, Any]:
        from datasets import Dataset, DatasetDict

        names = list(getattr(self.inner, "splits", None) or PROBLEM_SPLITS)
        splits: dict[str, Any] = {}
        for split in names:
            rows = self.inner.problems(split)
            if rows is None or len(rows) == 0:
                continue
            rows = [dict(row) for row in rows]
            column = "text" if split.startswith("pretrain") else "prompt"
            if any(column not in row for row in rows):
                raise HarnessError(
                    f"task {self.name!r}: a row of its {split!r} problems has no {column!r}; expected a {column!r} "
                    f"in every row (got keys {sorted(rows[0])})"
                )
            splits[split] = Dataset.from_list(rows)
        if "eval_prompts" not in splits:
            raise HarnessError(f"task {self.name!r}: problems('eval_prompts') gave no problems; expected the test set")
        DatasetDict(splits).save_to_disk(str(out_dir))
        return {f"size_{split}": len(rows) for split, rows in splits.items()}


class Verifier:
    """The task's checks, called with rendered prompts: each is looked up in the task's problems (every split with
    a `prompt`, rendered as the policies read them)."""

    def __init__(self, task: Any, problems: Mapping[str, Mapping[str, Any]]) -> None:
        if not is_verifiable(task):
            raise HarnessError(
                f"task {task.name!r} has no verify(problem, completion); expected a task with checkable answers "
                "(task=arithmetic, gsm8k, math) for reward=verifier or eval=pass_at_k"
            )
        self.task = task
        self.problems = problems
        self.has_format = callable(getattr(task, "format_reward", None))
        self.has_answers = callable(getattr(task, "final_answer", None))

    def problem(self, prompt: str) -> Mapping[str, Any]:
        try:
            return self.problems[prompt]
        except KeyError:
            shown = prompt if len(prompt) <= 60 else prompt[:57] + "..."
            raise HarnessError(
                f"verifier: prompt {shown!r} is not one of the problems of task {self.task.name!r}; expected a prompt "
                "of its datasets"
            ) from None

    def _each(self, check: Callable[[Any, str], Any], prompts: Sequence[str], completions: Sequence[str]) -> list:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        return [check(self.problem(p), c) for p, c in zip(prompts, completions, strict=True)]

    def verify(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """1.0 for a right answer, 0.0 for a wrong one (or the task's partial credit)."""
        scores = [float(v) for v in self._each(self.task.verify, prompts, completions)]
        bad = next((s for s in scores if not 0.0 <= s <= 1.0), None)
        if bad is not None:
            raise HarnessError(f"task {self.task.name!r}: verify returned {bad}; expected a value in [0, 1]")
        return scores

    def format(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float] | None:
        """The task's format reward in [0, 1], or None when it has none."""
        if not self.has_format:
            return None
        return [float(v) for v in self._each(self.task.format_reward, prompts, completions)]

    def answers(self, prompts: Sequence[str], completions: Sequence[str]) -> list[str | None] | None:
        """Each completion's normalised final answer (None: it gives none), or None when the task cannot say."""
        if not self.has_answers:
            return None
        return [None if a is None else str(a) for a in self._each(self.task.final_answer, prompts, completions)]



def problem_table(splits: Mapping[str, Any], render: Callable[[Any], str]) -> dict[str, dict[str, Any]]:
    """Rendered prompt -> its problem row (the task's own prompt under `prompt`), over every split with prompts.
    A prompt that appears in two splits keeps its first row: the task gives it one answer."""
    table: dict[str, dict[str, Any]] = {}
    with_prompts = [split for split in splits.values() if "prompt" in split.column_names]
    # prompt splits first: a demonstration's row (prompt, completion) may lack what the check needs
    with_prompts.sort(key=lambda split: "completion" in split.column_names or "chosen" in split.column_names)
    for split in with_prompts:
        for row in split:
            table.setdefault(render(row["prompt"]), dict(row))
    return table
