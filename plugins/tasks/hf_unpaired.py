"""Unpaired feedback (KTO's form) from the Hub or local files: single completions labelled desirable or not.

Each row is a prompt, a completion and a boolean `label` (trl-lib/kto-mix-14k); prompt and completion are text,
or messages (a list of `{role, content}` turns, and a list holding the assistant's reply), and stay so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.api import HarnessError
from plugins.tasks.hf_preferences import HFDataTask, form, prompts_table, short, table, texts_table


class HFUnpaired(HFDataTask):
    """`task=hf_unpaired`: completions labelled desirable (true) or undesirable (false), each on its own.

    Splits, from the training rows: `unpaired` (prompt, completion, label), `sft` (prompt, completion: the
    desirable ones), `prompts` (the distinct prompts) and `pretrain` (prompt + completion as plain text); from the
    held-out rows (a seeded `eval_fraction` of the distinct prompts): `eval_prompts` and `pretrain_heldout`; from
    the validation rows (a seeded `validation_fraction` of the training prompts, taken out of training):
    `validation_prompts`.
    """

    completion_fields = ("completion",)
    other_fields = ("label",)
    default_name = "hf_unpaired"

    def example(self, i: int, row: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().example(i, row), "label": self._label(i, row["label"])}

    def _label(self, i: int, value: Any) -> bool:
        # 0/1 as well as booleans: CSV and pandas exports write labels as integers
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise HarnessError(
            f"{self._where}: row {i}, column {self.columns['label']!r} is {short(value)}; expected true or false "
            "(or 1 or 0)"
        )

    def splits(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        parts = self.held_out(examples)
        train, evaluation = parts.train, parts.evaluation
        kind = form(examples[0]["prompt"])
        desirable = [{"prompt": e["prompt"], "completion": e["completion"]} for e in train if e["label"]]
        if not desirable:
            raise HarnessError(
                f"{self._where}: none of the {len(train)} training rows is desirable (column "
                f"{self.columns['label']!r} true); expected some, for the sft split every method starts from"
            )
        return {
            "unpaired": table(train, {"prompt": kind, "completion": kind, "label": "bool"}),
            "sft": table(desirable, {"prompt": kind, "completion": kind}),
            "prompts": prompts_table(train, kind),
            "eval_prompts": prompts_table(evaluation, kind),
            "pretrain": texts_table(self.texts(train)),
            "pretrain_heldout": texts_table(self.texts(evaluation)),
            **self.validation_split(parts, kind),
        }
