"""Prompts alone, from the Hub or local files, for methods that sample their own completions (GRPO, PPO, online
DPO, ...) and are rewarded by the run's `reward=`. A prompt is text or a list of `{role, content}` messages
(trl-lib/ultrafeedback-prompt), and stays so.
"""

from __future__ import annotations

from typing import Any

from plugins.tasks.hf_preferences import HFDataTask, distinct, form, plain_text, prompts_table, texts_table


class HFPrompts(HFDataTask):
    """`task=hf_prompts`: a `prompt` column and nothing else.

    Splits: `prompts` (the distinct training prompts), `eval_prompts` (a seeded `eval_fraction` of the distinct
    prompts, held out), `validation_prompts` (a seeded `validation_fraction` of the training prompts, taken out of
    training), and `pretrain` / `pretrain_heldout` (the training and evaluation prompts as plain text, for a base
    model pretrained on the task's own text).
    """

    prompt_optional = False
    default_name = "hf_prompts"

    def splits(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        parts = self.held_out(examples)
        train, evaluation = parts.train, parts.evaluation
        kind = form(examples[0]["prompt"])
        return {
            "prompts": prompts_table(train, kind),
            "eval_prompts": prompts_table(evaluation, kind),
            "pretrain": texts_table([plain_text(p) for p in distinct([e["prompt"] for e in train])]),
            "pretrain_heldout": texts_table([plain_text(p) for p in distinct([e["prompt"] for e in evaluation])]),
            **self.validation_split(parts, kind),
        }
