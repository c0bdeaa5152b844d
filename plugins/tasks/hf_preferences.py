"""Any preference dataset (prompt / chosen / rejected) as a task: a Hub dataset, a local file or a saved dataset.

Each row becomes plain text: a prompt and two completions that join onto it (`prompt + completion`). Rows may be
- text: `prompt`, `chosen` and `rejected` are strings;
- messages: `chosen` and `rejected` are lists of `{role, content}`; the completion is the last assistant message,
  and the turns before it (a `prompt` column first, if any, then chosen's earlier turns) are rendered as
  `Human: ...\\n\\nAssistant: ...` into a prompt that ends with `Assistant:`;
- transcripts (Anthropic HH): no prompt column; `chosen` and `rejected` are whole dialogues and the prompt is their
  common prefix up to and including its last `Assistant:`.

Held-out rows are chosen by distinct prompt, so no evaluation prompt is seen in training. There is no exact
judge (`gold()` is None): evaluate with suites that need none.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

FIELDS = ("prompt", "chosen", "rejected")
BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
# `owner/name` or `name`: what a Hub dataset id looks like; anything else that does not exist is a missing file.
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
ROLE_NAMES = {"user": "Human", "human": "Human", "assistant": "Assistant", "system": "System"}
ASSISTANT = "Assistant:"
NO_PROMPT = object()  # the prompt of a row in a dataset without a prompt column


def joinable(prompt: str, completion: str) -> str:
    """The completion, with a leading space where `prompt + completion` would otherwise fuse two words."""
    if prompt[-1:].isspace() or completion[:1].isspace():
        return completion
    return " " + completion


def render(turns: list[dict[str, str]]) -> str:
    """A conversation as HH-style plain text, ending where the assistant's reply begins."""
    lines = [f"{ROLE_NAMES.get(t['role'], t['role'].capitalize())}: {t['content'].strip()}" for t in turns]
    return "\n\n".join([*lines, ASSISTANT])


def reason(error: BaseException) -> str:
    """The most specific one-line message in an exception chain (libraries wrap the useful one)."""
    best = type(error).__name__
    seen: BaseException | None = error
    while seen is not None:
        text = str(seen).strip()
        if text:
            best = text.splitlines()[0][:200]
        seen = seen.__cause__
    return best


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class HFPreferences:
    """`task=hf_preferences`: pairs of completions to one prompt, the better one first.

    Splits: `preferences` (prompt, chosen, rejected) and `sft` (prompt, completion = chosen) from the training
    rows; `prompts` (the distinct training prompts); `eval_prompts` (the distinct held-out prompts); `pretrain`
    and `pretrain_heldout` (prompt + chosen and prompt + rejected, from training and held-out rows), so a base
    model can be pretrained on the task's own text.
    """

    def __init__(
        self,
        name: str = "hf_preferences",
        path: str = "",
        subset: str | None = None,
        split: str = "train",
        columns: Mapping[str, str | None] | None = None,
        eval_fraction: float = 0.05,
        max_examples: int | None = None,
        seed: int = 0,
    ) -> None:
        # Checked in `build_datasets`: Hydra's `instantiate` would wrap an error raised here in its own.
        self.name = name
        self.path = path
        self.subset = subset
        self.split = split
        self.columns = dict(columns or {})
        self.eval_fraction = eval_fraction
        self.max_examples = max_examples
        self.seed = seed

    def gold(self) -> None:
        return None

    def fingerprint(self) -> dict[str, Any] | None:
        """Where the local data is and which version of it: part of the data stage's cache key, so an edited
        file or the same relative path read from another directory never reuses stale datasets."""
        local = Path(self.path).expanduser()
        if not local.exists():
            return None  # a Hub name: the name (and revision) in the config identify it
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        return {
            "path": str(local.resolve()),
            "files": [
                [str(f.relative_to(local)) if f != local else f.name, f.stat().st_size, f.stat().st_mtime_ns]
                for f in files
            ],
        }

    # -- building -------------------------------------------------------------------------------------------
    def build_datasets(self, out_dir: Path) -> dict[str, Any]:
        from datasets import Dataset, DatasetDict

        self._check_settings()
        dataset = self._load()
        if self.max_examples is not None:
            dataset = dataset.select(range(min(self.max_examples, len(dataset))))
        if len(dataset) == 0:
            raise HarnessError(f"{self._where}: the dataset is empty (split {self.split!r} has 0 rows)")
        rows = self._rows(dataset)
        held_out = self._held_out_prompts(rows)
        train = [row for row in rows if row["prompt"] not in held_out]
        evaluation = [row for row in rows if row["prompt"] in held_out]

        def texts(part: list[dict[str, str]]) -> list[str]:
            return [row["prompt"] + row[side] for row in part for side in ("chosen", "rejected")]

        def distinct(part: list[dict[str, str]]) -> list[str]:
            return list(dict.fromkeys(row["prompt"] for row in part))

        splits = DatasetDict(
            {
                "preferences": Dataset.from_list(train),
                "sft": Dataset.from_list([{"prompt": r["prompt"], "completion": r["chosen"]} for r in train]),
                "prompts": Dataset.from_dict({"prompt": distinct(train)}),
                "eval_prompts": Dataset.from_dict({"prompt": distinct(evaluation)}),
                "pretrain": Dataset.from_dict({"text": texts(train)}),
                "pretrain_heldout": Dataset.from_dict({"text": texts(evaluation)}),
            }
        )
        splits.save_to_disk(str(out_dir))
        words = [len(text.split()) for text in texts(rows)]
        return {
            "rows": len(rows),
            "distinct_prompts": len(distinct(rows)),
            "mean_text_words": sum(words) / len(words),
            "max_text_words": max(words),
            **{f"size_{split}": len(part) for split, part in splits.items()},
        }

    @property
    def _where(self) -> str:
        return f"task.path={self.path!r}"

    @property
    def _source(self) -> str:
        return "file" if Path(self.path).expanduser().is_file() else "dataset"

    def _check_settings(self) -> None:
        unknown = sorted(set(self.columns) - set(FIELDS))
        if unknown:
            raise HarnessError(f"task.columns.{unknown[0]}: no such field; expected only prompt, chosen, rejected")
        self.columns = {field: self.columns.get(field, field) for field in FIELDS}
        for field in ("chosen", "rejected"):
            if not isinstance(self.columns[field], str) or not self.columns[field]:
                raise HarnessError(f"task.columns.{field}={self.columns[field]!r}: expected a column name")
        if not isinstance(self.path, str) or not self.path.strip():
            raise HarnessError(f"{self._where}: expected a Hub dataset name or a local file or directory")
        if not isinstance(self.eval_fraction, int | float) or not 0 < self.eval_fraction < 1:
            raise HarnessError(f"task.eval_fraction={self.eval_fraction!r}: expected a fraction between 0 and 1")
        if self.max_examples is not None and (not isinstance(self.max_examples, int) or self.max_examples < 1):
            raise HarnessError(f"task.max_examples={self.max_examples!r}: expected a positive integer or null")

    # -- loading --------------------------------------------------------------------------------------------
    def _load(self) -> Any:
        local = Path(self.path).expanduser()
        if local.is_file():
            return self._load_file(local)
        if local.is_dir():
            return self._load_directory(local)
        if local.suffix.lower() in BUILDERS:
            raise HarnessError(f"{self._where}: no such file")
        if not HUB_NAME.fullmatch(self.path):
            raise HarnessError(f"{self._where}: no such file or directory (nor a Hub name such as 'owner/dataset')")
        return self._load_hub()

    def _load_file(self, local: Path) -> Any:
        from datasets import load_dataset

        builder = BUILDERS.get(local.suffix.lower())
        if builder is None:
            raise HarnessError(
                f"{self._where}: unsupported file type {local.suffix or '(none)'!r}; expected "
                f"{', '.join(BUILDERS)}, a saved dataset directory or a Hub dataset name"
            )
        self._no_subset()
        if local.stat().st_size == 0:
            raise HarnessError(f"{self._where}: the file is empty")
        try:
            return load_dataset(builder, data_files=str(local), split=self.split)
        except Exception as error:
            raise self._load_error(error, f"could not be read as {builder}") from None

    def _load_directory(self, local: Path) -> Any:
        from datasets import DatasetDict, load_dataset, load_from_disk

        try:
            saved = load_from_disk(str(local))
        except FileNotFoundError:  # not a `save_to_disk` directory: data files, or a Hub repository's clone
            try:
                return load_dataset(str(local), self.subset, split=self.split)
            except Exception as error:
                raise self._load_error(error, "could not be loaded as a dataset directory") from None
        self._no_subset()
        if isinstance(saved, DatasetDict):
            if self.split not in saved:
                raise HarnessError(f"task.split={self.split!r} does not exist in {self._where}; it has {list(saved)}")
            return saved[self.split]
        return saved

    def _load_hub(self) -> Any:
        from datasets import load_dataset

        try:
            return load_dataset(self.path, self.subset, split=self.split)
        except Exception as error:
            raise self._load_error(
                error, "no such file or directory, and loading it from the Hugging Face Hub failed"
            ) from None

    def _load_error(self, error: Exception, what: str) -> HarnessError:
        message = reason(error)
        unknown_split = re.search(r"Unknown split .*Should be one of (\[.*\])", message)
        if unknown_split:
            return HarnessError(
                f"task.split={self.split!r} does not exist in {self._where}; it has {unknown_split.group(1)}"
            )
        if "corresponds to no data" in message or isinstance(error, StopIteration):
            return HarnessError(f"{self._where}: the dataset is empty (split {self.split!r} has 0 rows)")
        return HarnessError(f"{self._where}: {what}: {message}")

    def _no_subset(self) -> None:
        if self.subset is not None:
            raise HarnessError(f"task.subset={self.subset!r}: a subset names a Hub configuration; use null here")

    # -- rows -----------------------------------------------------------------------------------------------
    def _rows(self, dataset: Any) -> list[dict[str, str]]:
        """Every row as {prompt, chosen, rejected} text, completions ready to append to the prompt."""
        present = list(dataset.column_names)
        prompt_column = self.columns["prompt"]
        implicit_prompt = prompt_column is None or (prompt_column == "prompt" and "prompt" not in present)
        for field in FIELDS:
            column = self.columns[field]
            if column is not None and column not in present and not (field == "prompt" and implicit_prompt):
                raise HarnessError(
                    f"{self._where}: column {column!r} is missing; the {self._source} has {present} "
                    f"(set task.columns.{field}=<name>)"
                )
        chosen = dataset[self.columns["chosen"]]
        rejected = dataset[self.columns["rejected"]]
        prompts = [NO_PROMPT] * len(chosen) if implicit_prompt else dataset[prompt_column]
        return [self._row(i, *values) for i, values in enumerate(zip(prompts, chosen, rejected, strict=True))]

    def _row(self, i: int, prompt: Any, chosen: Any, rejected: Any) -> dict[str, str]:
        if isinstance(chosen, list) or isinstance(rejected, list):
            if not (isinstance(chosen, list) and isinstance(rejected, list)):
                raise HarnessError(
                    f"{self._where}: row {i}: one of chosen and rejected is a list of messages and the other is "
                    "not; expected both in the same form"
                )
            turns, chosen_text = self._conversation(i, "chosen", chosen)
            _, rejected_text = self._conversation(i, "rejected", rejected)
            turns = self._prompt_turns(i, prompt) + turns
            if not turns:
                raise HarnessError(
                    f"{self._where}: row {i}: no prompt: no prompt column and no turns before the assistant's "
                    "reply (set task.columns.prompt=<name>)"
                )
            prompt_text = render(turns)
        else:
            chosen_text = self._text(i, "chosen", chosen)
            rejected_text = self._text(i, "rejected", rejected)
            if prompt is NO_PROMPT:
                prompt_text, chosen_text, rejected_text = self._split_transcripts(i, chosen_text, rejected_text)
            elif isinstance(prompt, list):
                prompt_text = render(self._messages(i, "prompt", prompt))
            else:
                prompt_text = self._text(i, "prompt", prompt)
        return {
            "prompt": prompt_text,
            "chosen": joinable(prompt_text, chosen_text),
            "rejected": joinable(prompt_text, rejected_text),
        }

    def _split_transcripts(self, i: int, chosen: str, rejected: str) -> tuple[str, str, str]:
        """HH transcripts: the prompt is the shared dialogue up to the last `Assistant:` they have in common."""
        pairs = enumerate(zip(chosen, rejected, strict=False))
        same = next((k for k, (a, b) in pairs if a != b), min(len(chosen), len(rejected)))
        cut = chosen[:same].rfind(ASSISTANT)
        if cut < 0:
            raise HarnessError(
                f"{self._where}: row {i}: there is no prompt column and chosen and rejected share no prefix ending "
                f"in {ASSISTANT!r} (the HH transcript form); set task.columns.prompt=<name>"
            )
        end = cut + len(ASSISTANT)
        prompt, chosen_reply, rejected_reply = chosen[:end].lstrip(), chosen[end:], rejected[end:]
        for column, reply in ((self.columns["chosen"], chosen_reply), (self.columns["rejected"], rejected_reply)):
            if not reply.strip():
                raise HarnessError(f"{self._where}: row {i}, column {column!r} has no reply after {ASSISTANT!r}")
        return prompt, chosen_reply, rejected_reply

    def _text(self, i: int, field: str, value: Any) -> str:
        column = self.columns[field]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise HarnessError(f"{self._where}: row {i}, column {column!r} is empty; expected non-empty text")
        if not isinstance(value, str):
            raise HarnessError(
                f"{self._where}: row {i}, column {column!r} is {type(value).__name__} {short(value)}; expected text "
                "or a list of {role, content} messages"
            )
        return value

    def _messages(self, i: int, field: str, value: list[Any]) -> list[dict[str, str]]:
        column = self.columns[field]
        for j, message in enumerate(value):
            if not (
                isinstance(message, Mapping)
                and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)
            ):
                raise HarnessError(
                    f"{self._where}: row {i}, column {column!r}, message {j} is {short(message)}; "
                    "expected {'role': <text>, 'content': <text>}"
                )
        return [{"role": m["role"], "content": m["content"]} for m in value]

    def _conversation(self, i: int, field: str, value: list[Any]) -> tuple[list[dict[str, str]], str]:
        """The turns before the last assistant message, and that message's content (the completion)."""
        messages = self._messages(i, field, value)
        replies = [j for j, m in enumerate(messages) if m["role"] == "assistant"]
        column = self.columns[field]
        if not replies:
            raise HarnessError(
                f"{self._where}: row {i}, column {column!r} has no assistant message; expected a conversation "
                "ending in the assistant's reply"
            )
        reply = messages[replies[-1]]["content"]
        if not reply.strip():
            raise HarnessError(f"{self._where}: row {i}, column {column!r}: the assistant's reply is empty")
        return messages[: replies[-1]], reply.strip()

    def _prompt_turns(self, i: int, prompt: Any) -> list[dict[str, str]]:
        if prompt is NO_PROMPT:
            return []
        if isinstance(prompt, list):
            return self._messages(i, "prompt", prompt)
        return [{"role": "user", "content": self._text(i, "prompt", prompt)}]

    def _held_out_prompts(self, rows: list[dict[str, str]]) -> set[str]:
        """A seeded `eval_fraction` of the distinct prompts (at least one, never all)."""
        prompts = list(dict.fromkeys(row["prompt"] for row in rows))
        if len(prompts) < 2:
            raise HarnessError(
                f"{self._where}: every row has the same prompt; expected at least 2 distinct prompts, "
                "to hold some out for evaluation"
            )
        count = min(len(prompts) - 1, max(1, round(self.eval_fraction * len(prompts))))
        random.Random(self.seed).shuffle(prompts)
        return set(prompts[:count])
