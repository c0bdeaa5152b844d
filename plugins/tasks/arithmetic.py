"""The reasoning testbed: multi-step arithmetic with worked solutions and an exact verifier (`task=arithmetic`).

A problem is a chain of additions and subtractions, `14 + 7 - 9`, whose running value stays in [0, max_value]; its
worked solution takes one step per operation and ends with an answer line:

    prompt:     compute 14 + 7 - 9 :
    completion: 14 + 7 = 21 , 21 - 9 = 12 , answer 12

Difficulty is the number of steps. The base model is pretrained on worked solutions of 1 to `max_steps` steps
in which each step's result is wrong with probability `p_step_error` (off by a little; the chain carries the wrong
value on, so the answer follows it) and a share `p_no_answer` stops before the answer line: it can solve problems,
not reliably, so pass@k at large k stands far above pass@1 (room for RL and for sampling). The SFT demonstrations
are correct worked solutions at the training difficulty. Held-out problems come at the training difficulty
(`eval_prompts`, `validation_prompts`) and harder (`hard_prompts`, `hard_steps` steps): none is a training
problem, and none of the held-out problems appears in pretraining.

The verifier reads the last `answer <number>` of a completion: 1 when it is the problem's value, else 0. The format
reward (reported apart) is 1 when the completion ends with one well-formed answer line. `chat=True` gives the same
problems as conversations for chat models.
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.api import HarnessError

ANSWER = re.compile(r"answer\s+(-?\d+)(?![\w.])")  # a whole number: `answer 12.5` and `answer 12abc` give none
FORMAT = re.compile(r"(?:^|,\s*)answer\s+-?\d+(?![\w.])\s*$")


def problem_text(values: Sequence[int], ops: Sequence[str]) -> str:
    return " ".join([str(values[0]), *(f"{op} {v}" for op, v in zip(ops, values[1:], strict=True))])


def parse_problem(prompt: str) -> tuple[list[int], list[str]]:
    """`compute 14 + 7 - 9 :` (or the text before a solution) -> its operands and operations: problem_text read back."""
    words = prompt.removeprefix("compute ").partition(":")[0].split()
    return [int(v) for v in words[::2]], words[1::2]


def step(total: int, op: str, value: int) -> int:
    return total + value if op == "+" else total - value


def final_number(completion: str) -> int | None:
    """The number after the last `answer` of a completion (None: it gives no answer)."""
    found = ANSWER.findall(completion)
    return int(found[-1]) if found else None


class Arithmetic:
    """Multi-step arithmetic problems with their exact answers; see the module's docstring."""

    def __init__(
        self,
        name: str = "arithmetic",
        seed: int = 0,
        steps: Sequence[int] = (3,),
        hard_steps: int = 5,
        max_steps: int = 5,
        max_operand: int = 5,
        max_value: int = 20,
        p_step_error: float = 0.3,
        p_no_answer: float = 0.1,
        num_pretrain: int = 40_000,
        num_pretrain_heldout: int = 1_000,
        num_sft: int = 1_000,
        num_prompts: int = 2_000,
        num_eval_prompts: int = 256,
        num_hard_prompts: int = 256,
        num_validation_prompts: int = 128,
        chat: bool = False,
        system_prompt: str | None = None,
    ) -> None:
        steps = [int(s) for s in steps]
        if not steps or min(steps) < 1 or max(steps) > max_steps or hard_steps > max_steps:
            raise HarnessError(
                f"task.steps={steps}, task.hard_steps={hard_steps}: expected steps between 1 and task.max_steps="
                f"{max_steps}, the longest chain the base model is pretrained on"
            )
        if max_operand > max_value:
            raise HarnessError(
                f"task.max_operand={max_operand} > task.max_value={max_value}: no first operand fits; expected "
                "max_operand <= max_value"
            )
        self.name = name
        self.seed = seed
        self.steps = steps
        self.hard_steps = int(hard_steps)
        self.max_steps = int(max_steps)
        self.max_operand = int(max_operand)
        self.max_value = int(max_value)
        self.p_step_error = float(p_step_error)
        self.p_no_answer = float(p_no_answer)
        self.sizes = {
            "pretrain": num_pretrain,
            "pretrain_heldout": num_pretrain_heldout,
            "sft": num_sft,
            "prompts": num_prompts,
            "eval_prompts": num_eval_prompts,
            "hard_prompts": num_hard_prompts,
            "validation_prompts": num_validation_prompts,
        }
        self.chat = chat
        self.system_prompt = system_prompt

    # -- problems ---------------------------------------------------------------------------------------
    def _rng(self, split: str) -> random.Random:
        return random.Random(f"{self.seed}/arithmetic/{split}")  # one stream per split, as the sentiment testbed

    def _problem(self, rng: random.Random, steps: int) -> tuple[list[int], list[str]]:
        values = [rng.randint(1, self.max_operand)]
        ops: list[str] = []
        total = values[0]
        for _ in range(steps):
            operand = rng.randint(1, self.max_operand)
            choices = [op for op, ok in (("+", total + operand <= self.max_value), ("-", total - operand >= 0)) if ok]
            op = rng.choice(choices)
            total = step(total, op, operand)
            values.append(operand)
            ops.append(op)
        return values, ops

    @staticmethod
    def answer(values: Sequence[int], ops: Sequence[str]) -> int:
        total = values[0]
        for op, v in zip(ops, values[1:], strict=True):
            total = step(total, op, v)
        return total

    def solution(
        self, values: Sequence[int], ops: Sequence[str], rng: random.Random | None = None, answer_line: bool = True
    ) -> str:
        """The worked solution; with `rng`, each step is wrong with probability p_step_error (the base model's
        corpus), and the chain goes on from the wrong value."""
        parts, total = [], values[0]
        for op, v in zip(ops, values[1:], strict=True):
            result = step(total, op, v)
            if rng is not None and rng.random() < self.p_step_error:
                result = max(0, result + rng.choice((-2, -1, 1, 2)))
            parts.append(f"{total} {op} {v} = {result}")
            total = result
        text = " , ".join(parts)
        return f"{text} , answer {total}" if answer_line else text

    def _prompt_text(self, values: Sequence[int], ops: Sequence[str]) -> str:
        return f"compute {problem_text(values, ops)} :"

    def _form(self, text: str) -> Any:
        if not self.chat:
            return text
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": text}]

    def _reply(self, text: str) -> Any:
        return [{"role": "assistant", "content": text}] if self.chat else " " + text

    def _problems(self, split: str, steps: Sequence[int], excluded: set[str]) -> list[dict[str, Any]]:
        rng, rows, seen, wasted = self._rng(split), [], set(), 0
        while len(rows) < self.sizes[split]:
            values, ops = self._problem(rng, rng.choice(list(steps)))
            text = self._prompt_text(values, ops)
            if text in excluded or text in seen:
                wasted += 1
                if wasted > 100 * self.sizes[split]:
                    raise HarnessError(
                        f"task.num_{split}={self.sizes[split]}: only {len(rows)} distinct problems of {list(steps)} "
                        f"steps were found beside the other splits; expected fewer problems or larger max_value/"
                        "max_operand"
                    )
                continue
            seen.add(text)
            rows.append(
                {"text": text, "answer": self.answer(values, ops), "steps": len(ops), "values": values, "ops": ops}
            )
        return rows

    def build_datasets(self, out_dir: Path) -> dict[str, Any]:
        from datasets import Dataset, DatasetDict

        held_out: set[str] = set()
        splits_rows: dict[str, list[dict[str, Any]]] = {}
        # the held-out problems first: every other split excludes them
        for split, steps in (("eval_prompts", self.steps), ("hard_prompts", [self.hard_steps])):
            splits_rows[split] = self._problems(split, steps, held_out)
            held_out |= {r["text"] for r in splits_rows[split]}
        splits_rows["validation_prompts"] = self._problems("validation_prompts", self.steps, held_out)
        held_out |= {r["text"] for r in splits_rows["validation_prompts"]}
        splits_rows["prompts"] = self._problems("prompts", self.steps, held_out)
        sft = self._problems("sft", self.steps, held_out)

        def corpus(split: str) -> list[str]:
            rng, texts = self._rng(split), []
            while len(texts) < self.sizes[split]:
                values, ops = self._problem(rng, rng.randint(1, self.max_steps))
                prompt = self._prompt_text(values, ops)
                if prompt in held_out:
                    continue
                full = rng.random() >= self.p_no_answer
                texts.append(f"{prompt} {self.solution(values, ops, rng, answer_line=full)}")
            return texts

        def prompts(rows: list[dict[str, Any]]) -> Dataset:
            return Dataset.from_list(
                [{"prompt": self._form(r["text"]), "answer": r["answer"], "steps": r["steps"]} for r in rows]
            )

        demos = [
            {"prompt": self._form(r["text"]), "completion": self._reply(self.solution(r["values"], r["ops"]))}
            for r in sft
        ]
        splits = DatasetDict(
            {
                "pretrain": Dataset.from_dict({"text": corpus("pretrain")}),
                "pretrain_heldout": Dataset.from_dict({"text": corpus("pretrain_heldout")}),
                "sft": Dataset.from_list(demos),
                **{split: prompts(rows) for split, rows in splits_rows.items()},
            }
        )
        splits.save_to_disk(str(out_dir))
        heldout = splits["pretrain_heldout"]["text"]
        correct = [self._corpus_correct(t) for t in heldout]
        return {
            "pretrain_correct": statistics.fmean(correct),  # share of corpus solutions whose answer is right
            **{f"size_{split}": len(rows) for split, rows in splits.items()},
        }

    def _corpus_correct(self, text: str) -> float:
        return float(final_number(text.partition(" : ")[2]) == self.answer(*parse_problem(text)))

    # -- the verifier -----------------------------------------------------------------------------------
    def gold(self) -> None:
        return None  # no sentiment-style gold reward: the verifier is this task's judge (reward=verifier)

    def verify(self, problem: Mapping[str, Any], completion: Any) -> float:
        return float(final_number(self._text(completion)) == int(problem["answer"]))

    def format_reward(self, problem: Mapping[str, Any], completion: Any) -> float:
        """1 when the completion ends with its one answer line (`..., answer 12`)."""
        text = self._text(completion).strip()
        return float(bool(FORMAT.search(text)) and len(ANSWER.findall(text)) == 1)

    def final_answer(self, problem: Mapping[str, Any], completion: Any) -> str | None:
        number = final_number(self._text(completion))
        return None if number is None else str(number)

    @staticmethod
    def _text(completion: Any) -> str:
        if isinstance(completion, str):
            return completion
        return " ".join(str(m.get("content", "")) for m in completion if m.get("role") == "assistant")

    def label_pairs(
        self, prompts: Sequence[Any], first: Sequence[str], second: Sequence[str]
    ) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Verifier-labelled pairs (DPO on a verifiable task): of two samples of a problem, the right one is chosen
        over the wrong one; a pair both right or both wrong says nothing and is dropped."""
        rows, both_right, both_wrong = [], 0, 0
        for prompt, a, b in zip(prompts, first, second, strict=True):
            problem = self._problem_row(prompt)
            right_a, right_b = self.verify(problem, a), self.verify(problem, b)
            if right_a == right_b:
                both_right += right_a == 1.0
                both_wrong += right_a == 0.0
                continue
            chosen, rejected = (a, b) if right_a > right_b else (b, a)
            rows.append({"prompt": prompt, "chosen": self._reply(chosen), "rejected": self._reply(rejected)})
        total = max(len(prompts), 1)
        return rows, {
            "pairs_kept": len(rows) / total,
            "both_right": both_right / total,
            "both_wrong": both_wrong / total,
        }

    def _problem_row(self, prompt: Any) -> dict[str, Any]:
        if not isinstance(prompt, str):
            prompt = next(m["content"] for m in reversed(prompt) if m["role"] == "user")
        return {"answer": self.answer(*parse_problem(prompt))}
