"""Maths problems with checkable answers, from the Hub or local files: GSM8K (`task=gsm8k`) and MATH (`task=math`,
evaluated on MATH-500), for RL with verifiable rewards (`reward=verifier`) and SFT on their worked solutions.

Each problem becomes a conversation: an optional system prompt, then the user's turn, the question followed by an
instruction saying how to state the answer (`#### <number>` for GSM8K, `\\boxed{}` for MATH). Every prompt row keeps
its reference answer under `answer` (GSM8K: the number after `####`, commas dropped; MATH: the `answer` column where
the dataset has one, as MATH-500 does, else the solution's last `\\boxed{}`), which `verify` checks completions
against (plugins.tasks.math_answers, with math-verify). Loading, local files, their fingerprint and one-line errors
are plugins.tasks.hf_preferences.HFDataTask's.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from harness.api import HarnessError
from plugins.tasks import math_answers
from plugins.tasks.hf_preferences import (
    HeldOut,
    HFDataTask,
    assistant,
    distinct,
    draw,
    local_kind,
    plain_text,
    prompt_key,
    table,
    texts_table,
)

INSTRUCTIONS = {
    "hashes": "Solve the problem step by step. Then give the final answer, a number, on a last line of its own, "
    "in the form '#### <number>'.",
    "boxed": "Please reason step by step, and put your final answer within \\boxed{}.",  # Qwen2.5-Math's prompt
}
# GSM8K's calculator annotations (`<<48/2=24>>`): tool calls of the original data, not text a model should imitate
CALCULATOR = re.compile(r"<<[^<>]*>>")


class ReasoningTask(HFDataTask):
    """What GSM8K and MATH share. Splits: `prompts` (the training problems), `eval_prompts` (the `eval_split`,
    from `eval_path` if given; with `eval_split: null`, a seeded `eval_fraction` of the training problems),
    `validation_prompts` (a seeded `validation_fraction` of the training problems, taken out of training): each
    row `prompt` (messages) and `answer`, with the task's `metadata` columns; `sft` (prompt, completion: the worked
    solution as the assistant's reply); `pretrain` / `pretrain_heldout` (those conversations as plain text).
    Training problems that are also test problems are dropped from training."""

    other_fields = ("solution",)
    prompt_optional = False
    optional_fields: tuple[str, ...] = ()  # columns read where the dataset has them
    metadata: ClassVar[dict[str, tuple[str, ...]]] = {}  # output column -> the dataset columns it may come from
    answer_form = "boxed"

    def __init__(
        self,
        name: str | None = None,
        path: str = "",
        subset: str | None = None,
        split: str = "train",
        columns: Mapping[str, str | None] | None = None,
        eval_path: str | None = None,
        eval_split: str | None = "test",
        eval_fraction: float = 0.05,
        max_examples: int | None = None,
        max_eval_examples: int | None = None,
        seed: int = 0,
        validation_fraction: float = 0.1,
        system_prompt: str | None = None,
        instruction: str | None = None,
    ) -> None:
        super().__init__(name, path, subset, split, columns, eval_fraction, max_examples, seed, validation_fraction)
        self.eval_path = eval_path
        self.eval_split = eval_split
        self.max_eval_examples = max_eval_examples
        self.system_prompt = system_prompt
        self.instruction = instruction
        self.path_setting = "path"  # which setting `path` is, for messages: `eval_path` when loading the test set
        self.dropped = 0  # training problems that were also test problems

    # -- what each task defines (and verify, format_reward, final_answer: harness.verifiable) ----------------
    def reference(self, i: int, example: Mapping[str, Any]) -> str:
        """The reference answer of row `i` (the example holds its fields and optional columns)."""
        raise NotImplementedError

    def demonstration(self, example: Mapping[str, Any]) -> str:
        """The worked solution as the SFT reply."""
        return example["solution"].strip()

    # -- settings ------------------------------------------------------------------------------------------
    @property
    def _where(self) -> str:
        return f"task.{self.path_setting}={self.path!r}"

    def _check_settings(self) -> None:
        optional = {field: self.columns.pop(field, field) for field in self.optional_fields}
        super()._check_settings()
        for field, column in optional.items():
            if column is not None and (not isinstance(column, str) or not column):
                raise HarnessError(f"task.columns.{field}={column!r}: expected a column name or null (none)")
        self.columns.update(optional)
        for setting in ("eval_path", "eval_split", "system_prompt", "instruction"):
            value = getattr(self, setting)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise HarnessError(f"task.{setting}={value!r}: expected text or null")
        count = self.max_eval_examples
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise HarnessError(f"task.max_eval_examples={count!r}: expected a positive integer or null")
        one_file = isinstance(self.path, str) and local_kind(Path(self.path).expanduser()) == "file"
        if one_file and self.eval_path is None and self.eval_split is not None:
            raise HarnessError(
                f"{self._where} is one file, so one split: give the test problems as task.eval_path=<file>, or "
                "hold some of these out with task.eval_split=null"
            )

    def fingerprint(self) -> dict[str, Any] | None:
        """Both sources' local files (the training one's, and `eval_path`'s when given)."""
        own = super().fingerprint()
        if self.eval_path is None:
            return own
        tested = HFDataTask.fingerprint(self._with(path=self.eval_path))
        return None if own is None and tested is None else {"train": own, "eval": tested}

    def _with(self, **settings: Any) -> ReasoningTask:
        twin = copy.copy(self)
        twin.__dict__.update(settings)
        return twin

    def _load_file(self, local: Path) -> Any:
        return HFDataTask._load_file(self._with(split="train"), local)  # a file holds one split, whatever its name

    def _no_subset(self) -> None:
        """A file or a saved dataset has no Hub configurations: the config's `subset` (GSM8K's `main`) names the
        Hub's, and is not needed here."""

    # -- rows ----------------------------------------------------------------------------------------------
    def messages(self, question: str) -> list[dict[str, str]]:
        instruction = self.instruction or INSTRUCTIONS[self.answer_form]
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": f"{question.strip()}\n{instruction}"}]

    def example(self, i: int, row: Mapping[str, Any]) -> dict[str, Any]:
        question = self._text(i, "prompt", row["prompt"])
        return {"prompt": self.messages(question), "solution": self._text(i, "solution", row["solution"])}

    def _examples(self, dataset: Any) -> list[dict[str, Any]]:
        examples = super()._examples(dataset)
        present = list(dataset.column_names)
        optional = {
            field: list(dataset[column])
            for field in self.optional_fields
            if (column := self.columns[field]) is not None and column in present
        }
        metadata = {
            name: list(dataset[column])
            for name, sources in self.metadata.items()
            if (column := next((c for c in sources if c in present), None)) is not None
        }
        for i, example in enumerate(examples):
            example.update({field: values[i] for field, values in optional.items()})
            example["answer"] = self.reference(i, example)
            example.update({name: self.metadata_text(name, values[i]) for name, values in metadata.items()})
        return examples

    @staticmethod
    def metadata_text(name: str, value: Any) -> str:
        text = "" if value is None else str(value).strip()
        if name == "level":  # MATH writes "Level 3", MATH-500 the number
            digits = re.search(r"\d+", text)
            return digits.group() if digits else text
        return text

    def texts(self, examples: Sequence[Mapping[str, Any]]) -> list[str]:
        return [plain_text(e["prompt"], assistant(self.demonstration(e))) for e in examples]

    # -- splits --------------------------------------------------------------------------------------------
    def build_datasets(self, out_dir: Path) -> dict[str, Any]:
        metrics = super().build_datasets(out_dir)
        return {**metrics, "training_rows_also_in_eval": self.dropped}

    def splits(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        evaluation = self._evaluation_examples()
        if evaluation is None:
            parts = self.held_out(examples)
        else:
            tested = {prompt_key(e["prompt"]) for e in evaluation}
            train = [e for e in examples if prompt_key(e["prompt"]) not in tested]
            self.dropped = len(examples) - len(train)
            if not train:
                raise HarnessError(f"{self._where}: every training problem is also a test problem; expected others")
            parts = self._with_validation(train, evaluation)
        problems = {"prompt": "messages", "answer": "text", **{name: "text" for name in self.metadata}}
        demonstrations = [{"prompt": e["prompt"], "completion": assistant(self.demonstration(e))} for e in parts.train]
        splits = {
            "prompts": table(self._distinct(parts.train), problems),
            "eval_prompts": table(self._distinct(parts.evaluation), problems),
            "sft": table(demonstrations, {"prompt": "messages", "completion": "messages"}),
            "pretrain": texts_table(self.texts(parts.train)),
            "pretrain_heldout": texts_table(self.texts(parts.evaluation)),
        }
        if self.validation_fraction:
            splits["validation_prompts"] = table(self._distinct(parts.validation), problems)
        return splits

    @staticmethod
    def _distinct(examples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """One row per problem (its first), as prompt splits hold them."""
        first: dict[str, dict[str, Any]] = {}
        for example in examples:
            first.setdefault(prompt_key(example["prompt"]), example)
        return list(first.values())

    def _with_validation(self, train: list[dict[str, Any]], evaluation: list[dict[str, Any]]) -> HeldOut:
        """Training rows split into training and validation (`validation_fraction` of the distinct problems)."""
        validation: set[str] = set()
        if self.validation_fraction:
            prompts = [prompt_key(p) for p in distinct([e["prompt"] for e in train])]
            if len(prompts) < 2:
                raise HarnessError(
                    f"{self._where}: {len(prompts)} distinct training problem is too few to hold some out for "
                    "validation; expected at least 2 (or task.validation_fraction=0)"
                )
            validation = draw(prompts, self.validation_fraction, random.Random(f"validation-{self.seed}"))
        held = [e for e in train if prompt_key(e["prompt"]) in validation]
        return HeldOut([e for e in train if prompt_key(e["prompt"]) not in validation], evaluation, [], held)

    def _evaluation_examples(self) -> list[dict[str, Any]] | None:
        """The test problems (`eval_split` of `eval_path`, else of `path`); None to hold some training ones out."""
        if self.eval_split is None:
            return None
        source = self._with(
            path=self.eval_path or self.path,
            subset=None if self.eval_path else self.subset,  # `subset` is the training source's configuration
            split=self.eval_split,
            max_examples=self.max_eval_examples,
            path_setting="eval_path" if self.eval_path else "path",
        )
        try:
            dataset = source._load()
        except HarnessError as error:  # the loader names the training split's setting
            raise HarnessError(str(error).replace("task.split=", "task.eval_split=")) from None
        if source.max_examples is not None:
            dataset = dataset.select(range(min(source.max_examples, len(dataset))))
        if len(dataset) == 0:
            raise HarnessError(f"{source._where}: the test set is empty (split {self.eval_split!r} has 0 rows)")
        return source._examples(dataset)


class GSM8K(ReasoningTask):
    """`task=gsm8k` (Cobbe et al. 2021): grade-school word problems; `question`, and `answer`, the worked solution
    ending in `#### <number>`. The answer is right when its number equals the reference exactly (`1,000` = 1000 =
    `\\boxed{1000}`). The completion's answer is the one in the form asked for (`answer_form`: `#### N`, or
    `\\boxed{N}`), else the other form, else its last number. SFT replies are the solutions without their
    calculator annotations (`<<48/2=24>>`), ending in the form asked for."""

    default_name = "gsm8k"

    def __init__(self, *args: Any, answer_form: str = "hashes", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answer_form = answer_form

    def _check_settings(self) -> None:
        super()._check_settings()
        if self.answer_form not in INSTRUCTIONS:
            raise HarnessError(f"task.answer_form={self.answer_form!r}: expected one of {', '.join(INSTRUCTIONS)}")

    def reference(self, i: int, example: Mapping[str, Any]) -> str:
        found = math_answers.after_hashes(example["solution"])
        value = math_answers.number(found) if found else None
        if value is None:
            raise HarnessError(
                f"{self._where}: row {i}, column {self.columns['solution']!r} does not end in '#### <number>' "
                f"(it ends {example['solution'].strip()[-40:]!r}); expected GSM8K's answer line"
            )
        return math_answers.number_text(value)

    def demonstration(self, example: Mapping[str, Any]) -> str:
        solution = CALCULATOR.sub("", example["solution"]).strip()
        if self.answer_form == "boxed":
            worked = solution[: solution.rfind(math_answers.HASHES)].rstrip()
            solution = f"{worked}\nThe final answer is $\\boxed{{{example['answer']}}}$."
        return solution

    def stated_answer(self, completion: str) -> str | None:
        """The answer as written: in the asked form, else the other, else the last number."""
        forms = {"hashes": math_answers.after_hashes, "boxed": math_answers.last_boxed}
        asked = forms[self.answer_form]
        other = next(find for form, find in forms.items() if form != self.answer_form)
        return asked(completion) or other(completion) or math_answers.last_number(completion)

    def final_answer(self, problem: Mapping[str, Any], completion: str) -> str | None:
        stated = self.stated_answer(completion)
        return math_answers.numeric_answer(stated) if stated else None

    def verify(self, problem: Mapping[str, Any], completion: str) -> float:
        return float(self.final_answer(problem, completion) == problem["answer"])

    def format_reward(self, problem: Mapping[str, Any], completion: str) -> float:
        if self.answer_form == "boxed":
            return float(math_answers.last_boxed(completion) is not None)
        line = math_answers.after_hashes(completion)
        return float(line is not None and math_answers.NUMBER.search(line) is not None)


class CompetitionMath(ReasoningTask):
    """`task=math` (Hendrycks et al. 2021): competition problems; `problem`, `solution` (its final answer in
    `\\boxed{}`), and in MATH-500 `answer`, `subject`, `level` (MATH itself: `type`, `level` 'Level 3'). The answer
    is right when math-verify finds it equal to the reference (LaTeX or numbers: `\\frac{1}{2}` = `0.5`); the
    completion's answer is its last `\\boxed{}`, else what math-verify finds. Prompt rows keep `level` and
    `subject` (from `type` in MATH) where the dataset has them."""

    default_name = "math"
    optional_fields = ("answer",)
    metadata: ClassVar[dict[str, tuple[str, ...]]] = {"level": ("level",), "subject": ("subject", "type")}

    def reference(self, i: int, example: Mapping[str, Any]) -> str:
        given = example.get("answer")
        if isinstance(given, str) and given.strip():
            return given.strip()
        boxed = math_answers.last_boxed(example["solution"])
        if boxed is None:
            raise HarnessError(
                f"{self._where}: row {i}, column {self.columns['solution']!r} has no \\boxed{{}} answer and there is "
                f"no answer column; expected MATH's solutions (or set task.columns.answer=<name>)"
            )
        return boxed

    def verify(self, problem: Mapping[str, Any], completion: str) -> float:
        return float(math_answers.equivalent(problem["answer"], completion))

    def format_reward(self, problem: Mapping[str, Any], completion: str) -> float:
        return float(math_answers.last_boxed(completion) is not None)

    def final_answer(self, problem: Mapping[str, Any], completion: str) -> str | None:
        return math_answers.expression_text(completion)
