"""Prompts alone, from the Hub or local files, for methods that sample their own completions (GRPO, PPO, online
DPO, ...) and are rewarded by the run's `reward=`. A prompt is text or a list of `{role, content}` messages
(trl-lib/ultrafeedback-prompt), and stays so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plugins.tasks.hf_preferences import HFDataTask, distinct, form, plain_text, prompts_table, texts_table


class HFPrompts(HFDataTask):
    """`task=hf_prompts`: a `prompt` column and nothing else.

    Splits: `prompts` (the distinct training prompts), `eval_prompts` (a seeded `eval_fraction` of the distinct
    prompts, held out), and `pretrain` / `pretrain_heldout` (those prompts as plain text, for a base model
    pretrained on the task's own text).
    """

    prompt_optional = False

    def __init__(
        self,
        name: str = "hf_prompts",
        path: str = "",
        subset: str | None = None,
        split: str = "train",
        columns: Mapping[str, str | None] | None = None,
        eval_fraction: float = 0.05,
        max_examples: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(name, path, subset, split, columns, eval_fraction, max_examples, seed)

    def splits(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        train, evaluation, _ = self.held_out(examples)
        kind = form(examples[0]["prompt"])
        return {
            "prompts": prompts_table(train, kind),
            "eval_prompts": prompts_table(evaluation, kind),
            "pretrain": texts_table([plain_text(p) for p in distinct([e["prompt"] for e in train])]),
            "pretrain_heldout": texts_table([plain_text(p) for p in distinct([e["prompt"] for e in evaluation])]),
        }
