"""Datasets from the Hugging Face Hub or local files as tasks, and the first of them: preference pairs.

`HFDataTask` is what every Hub-backed task shares: where the data is (a Hub name, a local file, a saved dataset
or a directory of data files), the data stage's cache key (`fingerprint`), one-line errors for bad input, and
rows read as text or as messages (harness.chat), which stay as they are:
- text: the prompt and the completions are strings; a completion joins onto its prompt (`prompt + completion`);
- messages: the prompt is a list of `{role, content}` messages ending in a system or user turn, and a completion
  is `[{"role": "assistant", "content": reply}]` (TRL's conversational form). A dataset whose completions are
  whole conversations gives the turns before the last assistant message to the prompt (after a `prompt` column,
  if any, unless the conversation repeats it) and that message to the completion.
The harness renders messages with each model's chat template later; a model pretrained from scratch reads
them as a plain transcript (`harness.chat.render_plain`). Held-out rows are chosen by distinct prompt, so no
evaluation prompt is seen in training, and a seeded `validation_fraction` of the training prompts is taken out of
training into `validation_prompts` (what tuning chooses settings on, never the evaluation's prompts). There is no
exact judge (`gold()` is None).

`HFPreferences` (`task=hf_preferences`, and the ready configs ultrafeedback, hh_rlhf, tldr) reads prompt /
chosen / rejected; without a prompt column, chosen and rejected are Anthropic HH transcripts and the prompt is
their common prefix up to and including its last `Assistant:` (kept as text, or parsed into messages).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from harness.api import HarnessError, check_messages, joinable, render_plain

BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
# `owner/name` or `name`: what a Hub dataset id looks like; anything else that does not exist is a missing file.
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
ASSISTANT = "Assistant:"
# A speaker's turn in an HH transcript; the text before the first one must be empty.
HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}
NO_PROMPT = object()  # the prompt of a row in a dataset without a prompt column
# What loaders say when a split has no rows (the second: Arrow's parquet reader, on a file of zero rows).
NO_DATA = ("corresponds to no data", "BatchSize must be greater than 0")

Prompt = str | list[dict[str, str]]
Rows = list[dict[str, Any]]


class HeldOut(NamedTuple):
    """A task's rows split by distinct prompt (`HFDataTask.held_out`)."""

    train: Rows
    evaluation: Rows
    judge: Rows
    validation: Rows


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


def local_kind(path: Path) -> str | None:
    """`file`, `dir`, or None: nothing there, or a name the system cannot look up (too long, say)."""
    try:
        return "file" if path.is_file() else "dir" if path.is_dir() else None
    except OSError:
        return None


def first_not_utf8(values: Any) -> int:
    """The first row of an Arrow column whose text is not UTF-8 (Arrow's JSON reader keeps such bytes unchecked)."""
    for row in range(len(values)):
        try:
            values.slice(row, 1).to_pylist()
        except UnicodeDecodeError:
            return row
    return 0


def form(prompt: Prompt) -> str:
    return "messages" if isinstance(prompt, list) else "text"


def prompt_key(prompt: Prompt) -> str:
    """What makes two prompts the same prompt: the text, or the messages' JSON."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def distinct(prompts: Sequence[Prompt]) -> list[Prompt]:
    """The prompts without repeats, in order of first appearance."""
    seen: dict[str, Prompt] = {}
    for prompt in prompts:
        seen.setdefault(prompt_key(prompt), prompt)
    return list(seen.values())


def plain_text(prompt: Prompt, completion: str | list[dict[str, str]] | None = None) -> str:
    """What a model pretrained from scratch reads: text as it is, messages as a plain transcript."""
    if isinstance(prompt, str):
        return prompt + (completion or "")
    return render_plain([*prompt, *(completion or [])], generation_prompt=False)


def assistant(reply: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": reply.strip()}]


def column_type(kind: str) -> Any:
    """The Arrow type of a split's column: `text`, `messages` or `bool`; fixed, so that empty splits keep it."""
    from datasets import List, Value

    if kind == "messages":
        return List({"role": Value("string"), "content": Value("string")})
    return Value("bool" if kind == "bool" else "string")


def table(rows: Sequence[Mapping[str, Any]], schema: Mapping[str, str]) -> Any:
    """A `datasets.Dataset` with the given columns (name -> `text`, `messages` or `bool`)."""
    from datasets import Dataset, Features

    features = Features({column: column_type(kind) for column, kind in schema.items()})
    return Dataset.from_dict({column: [row[column] for row in rows] for column in schema}, features=features)


def prompts_table(examples: Sequence[Mapping[str, Any]], kind: str) -> Any:
    """The distinct prompts of the rows, as a `prompt` column of `kind` (text or messages)."""
    return table([{"prompt": p} for p in distinct([e["prompt"] for e in examples])], {"prompt": kind})


def texts_table(texts: Sequence[str]) -> Any:
    return table([{"text": t} for t in texts], {"text": "text"})


def draw(prompts: list[str], fraction: float, rng: random.Random) -> set[str]:
    """A seeded `fraction` of the prompts: at least one, never all."""
    count = min(len(prompts) - 1, max(1, round(fraction * len(prompts))))
    shuffled = list(prompts)
    rng.shuffle(shuffled)
    return set(shuffled[:count])


class HFDataTask:
    """What every Hub or local-file task shares: settings, loading, rows as text or messages, held-out prompts.

    A subclass names its `completion_fields` (each a text or a one-assistant-message completion of the prompt),
    its `other_fields` (read as they are) and writes its splits in `splits`.
    """

    completion_fields: tuple[str, ...] = ()
    other_fields: tuple[str, ...] = ()
    prompt_optional = True  # without a prompt column, completions that are conversations hold the prompt
    default_name = ""  # `name` when the config gives none (its YAML always does)

    def __init__(
        self,
        name: str | None = None,
        path: str = "",
        subset: str | None = None,
        split: str = "train",
        columns: Mapping[str, str | None] | None = None,
        eval_fraction: float = 0.05,
        max_examples: int | None = None,
        seed: int = 0,
        validation_fraction: float = 0.1,
    ) -> None:
        # Checked in `build_datasets`: Hydra's `instantiate` would wrap an error raised here in its own.
        self.name = name or self.default_name
        self.path = path
        self.subset = subset
        self.split = split
        self.columns = dict(columns or {})
        self.eval_fraction = eval_fraction
        self.max_examples = max_examples
        self.seed = seed
        self.validation_fraction = validation_fraction

    @property
    def fields(self) -> tuple[str, ...]:
        return ("prompt", *self.completion_fields, *self.other_fields)

    def gold(self) -> None:
        return None

    def fingerprint(self) -> dict[str, Any] | None:
        """Where the local data is and which version of it: part of the data stage's cache key, so an edited
        file or the same relative path read from another directory never reuses stale datasets."""
        if not isinstance(self.path, str) or not self.path.strip():
            return None  # not a path: `build_datasets` says so in one line
        local = Path(self.path).expanduser()
        if local_kind(local) is None:
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
        from datasets import DatasetDict

        self._check_settings()
        dataset = self._load()
        if self.max_examples is not None:
            dataset = dataset.select(range(min(self.max_examples, len(dataset))))
        if len(dataset) == 0:
            raise HarnessError(f"{self._where}: the dataset is empty (split {self.split!r} has 0 rows)")
        examples = self._examples(dataset)
        splits = DatasetDict(self.splits(examples))
        # an empty split (hf_unpaired's sft, when no training row is desirable) gets one empty shard: `datasets`
        # writes none otherwise, and cannot load the stage back
        splits.save_to_disk(str(out_dir), num_shards={name: 1 for name, split in splits.items() if len(split) == 0})
        words = [len(text.split()) for text in self.texts(examples)]
        return {
            "rows": len(examples),
            "distinct_prompts": len(distinct([e["prompt"] for e in examples])),
            "mean_text_words": sum(words) / len(words),
            "max_text_words": max(words),
            **{f"size_{split}": len(part) for split, part in splits.items()},
        }

    def splits(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """The task's splits (name -> `datasets.Dataset`) from its rows."""
        raise NotImplementedError

    def texts(self, examples: Sequence[Mapping[str, Any]]) -> list[str]:
        """The rows as the plain text a model pretrained on the task reads (every completion after its prompt)."""
        if not self.completion_fields:
            return [plain_text(e["prompt"]) for e in examples]
        return [plain_text(e["prompt"], e[field]) for e in examples for field in self.completion_fields]

    def held_out(self, examples: Rows, judge_fraction: float = 0.0) -> HeldOut:
        """The rows split by distinct prompt into training, evaluation (a seeded `eval_fraction` of the prompts,
        at least one, never all), judge rows (`judge_fraction` of the training prompts) and validation rows
        (`validation_fraction` of the training prompts the judge left). The judge's and validation's are drawn from
        streams of their own, so that the evaluation prompts depend on neither and the judge's not on validation."""
        prompts = [prompt_key(p) for p in distinct([e["prompt"] for e in examples])]
        if len(prompts) < 2:
            raise HarnessError(
                f"{self._where}: every row has the same prompt; expected at least 2 distinct prompts, "
                "to hold some out for evaluation"
            )
        evaluation = draw(prompts, self.eval_fraction, random.Random(self.seed))
        judge: set[str] = set()
        if judge_fraction:
            training = [p for p in prompts if p not in evaluation]
            if len(training) < 2:
                raise HarnessError(
                    f"{self._where}: {len(prompts)} distinct prompts are too few to hold some out for evaluation "
                    "and some for the judge; expected at least 3 (or task.judge_fraction=0)"
                )
            judge = draw(training, judge_fraction, random.Random(f"judge-{self.seed}"))
        validation: set[str] = set()
        if self.validation_fraction:
            training = [p for p in prompts if p not in evaluation and p not in judge]
            if len(training) < 2:
                needed, judged = (4, ", some for the judge") if judge else (3, "")
                raise HarnessError(
                    f"{self._where}: {len(prompts)} distinct prompts are too few to hold some out for evaluation"
                    f"{judged} and some for validation; expected at least {needed} (or task.validation_fraction=0)"
                )
            validation = draw(training, self.validation_fraction, random.Random(f"validation-{self.seed}"))
        parts = HeldOut([], [], [], [])
        for example in examples:
            key = prompt_key(example["prompt"])
            if key in evaluation:
                parts.evaluation.append(example)
            elif key in judge:
                parts.judge.append(example)
            elif key in validation:
                parts.validation.append(example)
            else:
                parts.train.append(example)
        return parts

    def validation_split(self, parts: HeldOut, kind: str) -> dict[str, Any]:
        """`validation_prompts`: the validation rows' distinct prompts, laid out as `eval_prompts` (none at 0)."""
        return {"validation_prompts": prompts_table(parts.validation, kind)} if self.validation_fraction else {}

    @property
    def _where(self) -> str:
        return f"task.path={self.path!r}"

    @property
    def _source(self) -> str:
        return "file" if local_kind(Path(self.path).expanduser()) == "file" else "dataset"

    def _check_settings(self) -> None:
        unknown = sorted(set(self.columns) - set(self.fields))
        if unknown:
            raise HarnessError(f"task.columns.{unknown[0]}: no such field; expected only {', '.join(self.fields)}")
        self.columns = {field: self.columns.get(field, field) for field in self.fields}
        for field in self.fields:
            optional = field == "prompt" and self.prompt_optional
            column = self.columns[field]
            if not (optional and column is None) and (not isinstance(column, str) or not column):
                raise HarnessError(f"task.columns.{field}={column!r}: expected a column name")
        if not isinstance(self.path, str) or not self.path.strip():
            raise HarnessError(f"{self._where}: expected a Hub dataset name or a local file or directory")
        if not isinstance(self.split, str) or not self.split.strip():
            raise HarnessError(f"task.split={self.split!r}: expected a split name such as 'train'")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise HarnessError(f"task.seed={self.seed!r}: expected an integer")
        if not isinstance(self.eval_fraction, int | float) or not 0 < self.eval_fraction < 1:
            raise HarnessError(f"task.eval_fraction={self.eval_fraction!r}: expected a fraction between 0 and 1")
        fraction = self.validation_fraction
        if not isinstance(fraction, int | float) or isinstance(fraction, bool) or not 0 <= fraction < 1:
            raise HarnessError(
                f"task.validation_fraction={fraction!r}: expected a fraction from 0 (no validation split) below 1"
            )
        if self.max_examples is not None and (
            not isinstance(self.max_examples, int) or isinstance(self.max_examples, bool) or self.max_examples < 1
        ):
            raise HarnessError(f"task.max_examples={self.max_examples!r}: expected a positive integer or null")

    # -- loading --------------------------------------------------------------------------------------------
    def _load(self) -> Any:
        local = Path(self.path).expanduser()
        kind = local_kind(local)
        if kind == "file":
            return self._load_file(local)
        if kind == "dir":
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
        except Exception as error:  # a `save_to_disk` directory whose files are damaged
            raise self._load_error(error, "could not be loaded as a saved dataset (save_to_disk)") from None
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
        if any(sign in message for sign in NO_DATA) or isinstance(error, StopIteration):
            return HarnessError(f"{self._where}: the dataset is empty (split {self.split!r} has 0 rows)")
        return HarnessError(f"{self._where}: {what}: {message}")

    def _no_subset(self) -> None:
        if self.subset is not None:
            raise HarnessError(f"task.subset={self.subset!r}: a subset names a Hub configuration; use null here")

    # -- rows -----------------------------------------------------------------------------------------------
    def _examples(self, dataset: Any) -> list[dict[str, Any]]:
        """Every row as {prompt, completions..., other fields...}, in one form (text or messages)."""
        present = list(dataset.column_names)
        prompt_column = self.columns["prompt"]
        implicit_prompt = self.prompt_optional and (
            prompt_column is None or (prompt_column == "prompt" and "prompt" not in present)
        )
        for field in self.fields:
            column = self.columns[field]
            if column not in present and not (field == "prompt" and implicit_prompt):
                raise HarnessError(
                    f"{self._where}: column {column!r} is missing; the {self._source} has {present} "
                    f"(set task.columns.{field}=<name>)"
                )
        count = len(dataset)
        values = {
            field: [NO_PROMPT] * count if field == "prompt" and implicit_prompt else self._column(dataset, field)
            for field in self.fields
        }
        examples = []
        for i in range(count):
            row = {field: values[field][i] for field in self.fields}
            example = self.example(i, row)
            if examples and form(example["prompt"]) != form(examples[0]["prompt"]):
                # without a prompt column, the completions' form decides the prompt's
                sources = self.completion_fields if implicit_prompt else ("prompt",)
                columns = " and ".join(repr(self.columns[field]) for field in sources)
                raise HarnessError(
                    f"{self._where}: row {i} is {form(example['prompt'])} and row 0 is {form(examples[0]['prompt'])} "
                    f"in {columns}; expected every row in one form (a column holds one type)"
                )
            examples.append(example)
        return examples

    def _column(self, dataset: Any, field: str) -> list[Any]:
        column = self.columns[field]
        try:
            return list(dataset[column])
        except UnicodeDecodeError:
            row = first_not_utf8(dataset.data.column(column))
            raise HarnessError(
                f"{self._where}: row {row}, column {column!r} is not UTF-8 text; expected the {self._source} in UTF-8"
            ) from None

    def example(self, i: int, row: Mapping[str, Any]) -> dict[str, Any]:
        """One row as {prompt, completions...}; a subclass adds its other fields."""
        completions = {field: row[field] for field in self.completion_fields}
        prompt, completions = self._prompt_and_completions(i, row["prompt"], completions)
        return {"prompt": prompt, **completions}

    def _prompt_and_completions(
        self, i: int, prompt: Any, completions: Mapping[str, Any]
    ) -> tuple[Prompt, dict[str, Any]]:
        conversations = [field for field, value in completions.items() if isinstance(value, list)]
        if conversations and len(conversations) != len(completions):
            raise HarnessError(
                f"{self._where}: row {i}: one of {' and '.join(self.columns[f] for f in completions)} is a list of "
                "messages and the other is not; expected both in the same form"
            )
        if conversations:
            parsed = {field: self._conversation(i, field, value) for field, value in completions.items()}
            context = parsed[conversations[0]][0]  # the first completion's earlier turns (chosen's)
            turns = self._prompt_messages(i, prompt)
            if len(context) >= len(turns) and all(
                a["role"] == b["role"] and a["content"].strip() == b["content"].strip()
                for a, b in zip(turns, context, strict=False)
            ):
                context = context[len(turns) :]  # the conversation repeats the prompt column (UltraFeedback)
            messages = turns + context
            if not messages:
                raise HarnessError(
                    f"{self._where}: row {i}: no prompt: no prompt column and no turns before the assistant's "
                    "reply (set task.columns.prompt=<name>)"
                )
            return self._ending_in_a_question(i, messages), {f: assistant(reply) for f, (_, reply) in parsed.items()}
        texts = {field: self._text(i, field, value) for field, value in completions.items()}
        if prompt is NO_PROMPT:
            return self._without_prompt(i, texts)
        if isinstance(prompt, list):
            messages = self._ending_in_a_question(i, self._messages(i, "prompt", prompt))
            return messages, {field: assistant(text) for field, text in texts.items()}
        prompt = self._text(i, "prompt", prompt)
        return prompt, {field: joinable(prompt, text) for field, text in texts.items()}

    def _without_prompt(self, i: int, completions: Mapping[str, str]) -> tuple[Prompt, dict[str, Any]]:
        """A row of text completions and no prompt column."""
        column = self.columns[next(iter(completions))] if completions else None
        raise HarnessError(
            f"{self._where}: row {i}: there is no prompt column and column {column!r} is text; expected a prompt "
            "column (set task.columns.prompt=<name>) or conversations ending in the assistant's reply"
        )

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
        return check_messages(value, f"{self._where}: row {i}, {self.columns[field]}")

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

    def _prompt_messages(self, i: int, prompt: Any) -> list[dict[str, str]]:
        if prompt is NO_PROMPT:
            return []
        if isinstance(prompt, list):
            return self._messages(i, "prompt", prompt)
        return [{"role": "user", "content": self._text(i, "prompt", prompt)}]

    def _ending_in_a_question(self, i: int, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """A prompt of messages must end in a turn for the assistant to answer."""
        if not messages:
            raise HarnessError(f"{self._where}: row {i}, column {self.columns['prompt']!r} has no messages")
        if messages[-1]["role"] == "assistant":
            raise HarnessError(
                f"{self._where}: row {i}: the prompt ends in an assistant turn; expected a system or user turn "
                "for the reply to answer"
            )
        return messages


class HFPreferences(HFDataTask):
    """`task=hf_preferences`: pairs of completions to one prompt, the better one first.

    Splits, from the training rows: `preferences` (prompt, chosen, rejected), `sft` (prompt, completion =
    chosen), `prompts` (the distinct prompts) and `pretrain` (prompt + chosen and prompt + rejected as plain
    text, for a base model pretrained on the task's own text); from the held-out rows: `eval_prompts` and
    `pretrain_heldout`; from the judge's rows (`judge_fraction` of the training prompts, which no method trains
    on): `judge_preferences` (prompt, chosen, rejected), for a held-out reward model that judges the methods;
    from the validation rows (`validation_fraction` of the training prompts, which no stage trains on):
    `validation_prompts`.
    """

    completion_fields = ("chosen", "rejected")

    def __init__(
        self,
        name: str = "hf_preferences",
        path: str = "",
        subset: str | None = None,
        split: str = "train",
        columns: Mapping[str, str | None] | None = None,
        transcripts_as_messages: bool = False,
        eval_fraction: float = 0.05,
        judge_fraction: float = 0.1,
        max_examples: int | None = None,
        seed: int = 0,
        validation_fraction: float = 0.1,
    ) -> None:
        super().__init__(name, path, subset, split, columns, eval_fraction, max_examples, seed, validation_fraction)
        self.transcripts_as_messages = transcripts_as_messages
        self.judge_fraction = judge_fraction

    def _check_settings(self) -> None:
        super()._check_settings()
        if not isinstance(self.judge_fraction, int | float) or not 0 <= self.judge_fraction < 1:
            raise HarnessError(
                f"task.judge_fraction={self.judge_fraction!r}: expected a fraction from 0 (no judge split) below 1"
            )
        if not isinstance(self.transcripts_as_messages, bool):
            raise HarnessError(f"task.transcripts_as_messages={self.transcripts_as_messages!r}: expected true or false")

    def splits(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        parts = self.held_out(examples, self.judge_fraction)
        train, evaluation = parts.train, parts.evaluation
        kind = form(examples[0]["prompt"])
        pairs = {"prompt": kind, "chosen": kind, "rejected": kind}
        demonstrations = [{"prompt": e["prompt"], "completion": e["chosen"]} for e in train]
        splits = {
            "preferences": table(train, pairs),
            "sft": table(demonstrations, {"prompt": kind, "completion": kind}),
            "prompts": prompts_table(train, kind),
            "eval_prompts": prompts_table(evaluation, kind),
            "pretrain": texts_table(self.texts(train)),
            "pretrain_heldout": texts_table(self.texts(evaluation)),
            **self.validation_split(parts, kind),
        }
        if self.judge_fraction:
            splits["judge_preferences"] = table(parts.judge, pairs)
        return splits

    def _without_prompt(self, i: int, completions: Mapping[str, str]) -> tuple[Prompt, dict[str, Any]]:
        prompt, chosen, rejected = self._split_transcripts(i, completions["chosen"], completions["rejected"])
        if not self.transcripts_as_messages:
            return prompt, {"chosen": chosen, "rejected": rejected}
        messages = self._ending_in_a_question(i, self._parse_transcript(i, prompt))
        return messages, {"chosen": assistant(chosen), "rejected": assistant(rejected)}

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

    def _parse_transcript(self, i: int, prompt: str) -> list[dict[str, str]]:
        """`Human: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant:` -> user a, assistant b, user c."""
        parts = HH_TURN.split(prompt)
        if parts[0].strip():
            raise HarnessError(
                f"{self._where}: row {i}, column {self.columns['chosen']!r} starts with {short(parts[0])}; expected "
                "an HH transcript starting with 'Human:'"
            )
        speakers, contents = parts[1::2], parts[2::2]
        if speakers[-1:] != ["Assistant"] or contents[-1].strip():
            raise HarnessError(
                f"{self._where}: row {i}, column {self.columns['chosen']!r}: the prompt does not end in "
                "'\\n\\nAssistant:'; expected an HH transcript of '\\n\\nHuman:' and '\\n\\nAssistant:' turns"
            )
        # the last speaker is the `Assistant:` whose reply is the completion
        return [
            {"role": HH_ROLES[speaker], "content": content.strip()}
            for speaker, content in zip(speakers[:-1], contents[:-1], strict=True)
        ]
