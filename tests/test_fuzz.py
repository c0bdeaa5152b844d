"""Generated bad input (Hypothesis) for the task loaders and the CLI: wrong column types, empty strings, invalid
UTF-8, huge rows, messages with unknown roles or without content, missing columns, broken files and saved datasets,
odd settings. Each run either builds well-formed splits or stops with one line naming the bad value (a
`HarnessError`, `error: ...` at the CLI, or Hydra's own short message for an override it cannot parse), never a
traceback; and no stage folder is ever marked complete unless its files are what its build recorded.

Bounded and deterministic (`derandomize`): 60 in-process examples and 5 CLI runs, about 80 s on two cores.
Generated strings never hold `$` (an OmegaConf interpolation is Hydra's to report, not the loaders')."""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import run_harness
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from harness.chat import ROLES
from harness.errors import HarnessError
from harness.stages import MARKER, StageCache, release_stages

# config name, the form of its rows, and the settings a local file needs (ultrafeedback's Hub split is train_prefs)
VARIANTS = [
    ("hf_preferences", "text", {}),
    ("hf_preferences", "messages", {}),
    ("hf_preferences", "conversations", {}),  # no prompt column: the conversations hold it
    ("tldr", "text", {}),
    ("ultrafeedback", "ultrafeedback", {"split": "train"}),
    ("hh_rlhf", "transcripts", {}),
    ("hf_unpaired", "text", {}),
    ("hf_unpaired", "messages", {}),
    ("hf_prompts", "text", {}),
    ("hf_prompts", "messages", {}),
]
FORMATS = ("jsonl", "json", "json_columns", "csv", "parquet")
CONTAINERS = ("file", "directory", "saved")  # a data file, a folder of data files, a `save_to_disk` folder
INVALID_UTF8 = "\ue000"  # a private-use character in a value, replaced by the bytes b"\xff\xfe" in the file
HUGE = "word " * 40_000  # a 200k-character value
TEXT_COLUMNS = ("prompt", "completion", "chosen", "rejected")
HYDRA_HINT = "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."

# ---------------------------------------------------------------------------------------------- strategies
words = st.text(alphabet="abcdefghij ", min_size=1, max_size=12).map(str.strip).filter(bool)
odd_strings = st.sampled_from(["", "   ", "\n", "\x00", "\ud800", "Human:", "\n\nAssistant:", INVALID_UTF8, "é" * 3])
# no "$": an interpolation (`${...}`) in a value is resolved by OmegaConf before a loader sees it
plain_text = st.text(alphabet=st.characters(exclude_characters="$", exclude_categories=("Cs",)), max_size=16)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    plain_text,
    odd_strings,
)
roles = st.one_of(st.sampled_from([*ROLES, "tool", "bot", "", "USER"]), scalars)
messages = st.lists(
    st.dictionaries(
        st.sampled_from(["role", "content", "name"]),
        st.one_of(roles, scalars, st.lists(scalars, max_size=2)),
        max_size=3,
    ),
    max_size=3,
)
bad_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["a", "role", "content"]), scalars, max_size=2),
    messages,
    st.binary(max_size=6),  # bytes: an Arrow binary column in parquet, their repr in JSON and CSV
    st.just(HUGE),
)
setting_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    plain_text,
    st.lists(st.sampled_from(["train", "a"]), max_size=2),
    st.just({"a": 1}),
)
SETTINGS = (
    "split", "seed", "max_examples", "eval_fraction", "judge_fraction", "validation_fraction", "subset", "columns",
    "path",
)  # fmt: skip


@dataclass
class Case:
    """One generated input: a task config, its rows, how they are written, and what was done to them."""

    task: str
    form: str
    settings: dict[str, Any]
    rows: list[dict[str, Any]]
    file_format: str = "jsonl"
    container: str = "file"
    ensure_ascii: bool = False
    bad_cell: tuple[int, str] | None = None  # (row, column) of the one value replaced, when that is all that changed
    changes: list[str] = field(default_factory=list)
    damage: tuple[str, Any] | None = None  # what is done to the written file(s) afterwards
    bad_settings: bool = False


def valid_row(form: str, task: str, i: int, text: str) -> dict[str, Any]:
    """Row `i` of a dataset a loader accepts, in `form`; its prompt is distinct from every other row's."""
    prompt, good, bad = f"{text} {i}", f"good {text}", f"bad {text}"
    user = {"role": "user", "content": prompt}

    def reply(content: str) -> list[dict[str, str]]:
        return [{"role": "assistant", "content": content}]

    if task == "hf_prompts":
        return {"prompt": prompt if form == "text" else [{"role": "system", "content": "be brief"}, user]}
    if task == "hf_unpaired":
        if form == "text":
            return {"prompt": prompt, "completion": good, "label": i % 3 != 0}
        return {"prompt": [user], "completion": reply(good), "label": i % 3 != 0}
    if form == "text":
        return {"prompt": prompt, "chosen": good, "rejected": bad}
    if form == "messages":
        return {"prompt": [user], "chosen": reply(good), "rejected": reply(bad)}
    if form == "conversations":
        return {"chosen": [user, *reply(good)], "rejected": [user, *reply(bad)]}
    if form == "ultrafeedback":
        return {"prompt": prompt, "chosen": [user, *reply(good)], "rejected": [user, *reply(bad)]}
    return {  # HH transcripts
        "chosen": f"\n\nHuman: {prompt}\n\nAssistant: {good}",
        "rejected": f"\n\nHuman: {prompt}\n\nAssistant: {bad}",
    }


@st.composite
def cases(draw: st.DrawFn, max_rows: int = 8, allow_settings: bool = True) -> Case:
    task, form, fixed = draw(st.sampled_from(VARIANTS))
    text = draw(words)
    rows = [valid_row(form, task, i, text) for i in range(draw(st.integers(3, max_rows)))]
    case = Case(task, form, dict(fixed), rows)
    case.file_format = draw(st.sampled_from(FORMATS))
    case.container = draw(st.sampled_from(CONTAINERS))
    case.ensure_ascii = draw(st.booleans())
    columns = list(rows[0])
    change_rows(draw, case, rows, columns)
    if len(case.changes) != 1 or case.file_format == "json_columns":  # columns as one object: a row of lists
        case.bad_cell = None
    if draw(st.integers(0, 5)) == 0:
        case.rows = rows[: draw(st.integers(0, 1))]  # no rows, or one
        case.bad_cell = None
    damage = draw(st.sampled_from(["none"] * 8 + ["truncate", "garbage_line", "bom", "bytes", "unbalanced_quote"]))
    if damage != "none":
        case.damage = (damage, draw(st.binary(max_size=24)) if damage == "bytes" else draw(st.integers(0, 10**6)))
    if allow_settings and draw(st.integers(0, 4)) == 0:
        add_bad_setting(draw, case, columns)
    return case


def change_rows(draw: st.DrawFn, case: Case, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """None, one or two changes to the valid rows, each recorded in `case.changes`; the first, if a cell, is the
    case's `bad_cell`."""
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        change = draw(st.sampled_from(["cell", "cell", "cell", "drop_column", "drop_key", "rename", "same_value"]))
        column = draw(st.sampled_from(columns))
        row = draw(st.integers(0, len(rows) - 1))
        apply_change(draw, change, rows, column, row)
        case.changes.append(f"{change} {column!r} row {row}")
        if change == "cell" and len(case.changes) == 1:
            case.bad_cell = (row, column)


def apply_change(draw: st.DrawFn, change: str, rows: list[dict[str, Any]], column: str, row: int) -> None:
    if change == "cell":
        rows[row][column] = draw(bad_values)
    elif change == "drop_column":
        for r in rows:
            r.pop(column, None)
    elif change == "drop_key":
        rows[row].pop(column, None)
    elif change == "rename":  # to another name, one that is not UTF-8, or one with a space
        name = draw(st.sampled_from([f"{column}_x", f"{column}{INVALID_UTF8}", f" {column}"]))
        for r in rows:
            if column in r:
                r[name] = r.pop(column)
    elif change == "same_value":
        for r in rows:
            r[column] = rows[0].get(column)


def add_bad_setting(draw: st.DrawFn, case: Case, columns: list[str]) -> None:
    """A task setting of any value (a `columns` mapping naming a real column or none), so the case may be refused
    for its settings rather than its data."""
    name = draw(st.sampled_from(SETTINGS))
    value = draw(setting_values)
    if name == "columns":
        value = {draw(st.sampled_from([*columns, "nope"])): value}
    case.settings[name] = value
    case.bad_settings = True


# ---------------------------------------------------------------------------------------------- writing
def as_json(value: Any, ensure_ascii: bool) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, default=repr)


def encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass").replace(INVALID_UTF8.encode(), b"\xff\xfe")


def file_bytes(case: Case) -> tuple[str, bytes]:
    """The rows as the bytes of a file of the case's format (parquet: the rows as Arrow can hold them)."""
    rows, ascii_only = case.rows, case.ensure_ascii
    if case.file_format == "jsonl":
        return "jsonl", encoded("".join(as_json(r, ascii_only) + "\n" for r in rows))
    if case.file_format == "json":
        return "json", encoded(as_json(rows, ascii_only))
    if case.file_format == "json_columns":  # one object of columns, not a list of rows
        columns = {c: [r.get(c) for r in rows] for r in rows for c in r}
        return "json", encoded(as_json(columns, ascii_only))
    if case.file_format == "csv":
        names = list(dict.fromkeys(c for r in rows for c in r))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(names)
        writer.writerows([[r.get(c) for c in names] for r in rows])
        return "csv", encoded(out.getvalue())
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pylist(rows)
        out = pa.BufferOutputStream()
        pq.write_table(table, out)
    except (pa.ArrowException, TypeError, ValueError, OverflowError, UnicodeError):
        case.file_format = "jsonl"  # values Arrow cannot hold in one column type: write them as JSON lines
        return file_bytes(case)
    return "parquet", out.getvalue().to_pybytes()


def damaged(content: bytes, damage: tuple[str, Any] | None) -> bytes:
    if damage is None:
        return content
    kind, value = damage
    if kind == "truncate":
        return content[: value % (len(content) + 1)]
    if kind == "garbage_line":
        return content + b'{"prompt": oops\n'
    if kind == "bom":
        return b"\xef\xbb\xbf" + content
    if kind == "unbalanced_quote":
        cut = value % (len(content) + 1)
        return content[:cut] + b'"' + content[cut:]
    return value + content[len(value) :]  # the first bytes overwritten


def write_case(case: Case, folder: Path) -> Path:
    """Write the case's data as a file, a folder of data files or a saved dataset; returns its path."""
    if case.container == "saved":
        from datasets import Dataset

        try:
            Dataset.from_list(case.rows).save_to_disk(str(folder / "saved"))
        except Exception:
            case.container = "file"  # rows no Arrow table holds: write a file instead
        else:
            files = sorted(p for p in (folder / "saved").iterdir() if p.is_file())
            if case.damage is not None and files:
                value = case.damage[1]
                target = files[(value if isinstance(value, int) else len(value)) % len(files)]
                target.write_bytes(damaged(target.read_bytes(), case.damage))
            return folder / "saved"
    suffix, content = file_bytes(case)
    content = damaged(content, case.damage)
    if case.container == "directory":
        (folder / "data").mkdir()
        path = folder / "data" / f"train.{suffix}"
        path.write_bytes(content)
        return folder / "data"
    path = folder / f"data.{suffix}"
    path.write_bytes(content)
    return path


# ---------------------------------------------------------------------------------------------- properties
def complete_stages(cache_root: Path) -> list[Path]:
    return sorted(marker.parent for marker in cache_root.glob(f"*/*/{MARKER}"))


def assert_complete_stages_are_sound(cache_root: Path) -> None:
    cache = StageCache(cache_root, verify="hashes")
    for folder in complete_stages(cache_root):
        assert cache.problem(folder.parent.name, folder.name) is None, f"{folder} is marked complete but is not sound"


def assert_message_list(value: Any, where: str) -> None:
    assert isinstance(value, list) and value, where
    for message in value:
        assert set(message) == {"role", "content"}, where
        assert message["role"] in ROLES and isinstance(message["content"], str), where


def assert_well_formed(splits: Any) -> None:
    """Every prompt and completion is text or {role, content} messages (a prompt ends in a turn to answer, a
    completion is one assistant reply), labels are booleans, and no evaluation or validation prompt is trained on."""
    for name, split in splits.items():
        for column in split.column_names:
            for i, value in enumerate(split[column]):
                where = f"{name}[{i}].{column}={str(value)[:80]!r}"
                if column == "label":
                    assert isinstance(value, bool), where
                elif column == "text":
                    assert isinstance(value, str) and value.strip(), where
                elif isinstance(value, str):
                    assert column in TEXT_COLUMNS and value.strip(), where
                elif column == "prompt":
                    assert_message_list(value, where)
                    assert value[-1]["role"] != "assistant", where
                else:
                    assert_message_list(value, where)
                    assert len(value) == 1 and value[0]["role"] == "assistant" and value[0]["content"].strip(), where

    def keys(split: str) -> set[str]:
        return {json.dumps(p, sort_keys=True) for p in splits[split]["prompt"]} if split in splits else set()

    assert keys("eval_prompts") and not keys("eval_prompts") & keys("prompts")
    assert not keys("validation_prompts") & (keys("prompts") | keys("eval_prompts"))


def what_stopped(message: str) -> str:
    """The kind of a loader's error, for Hypothesis' statistics: without the path, values, rows and columns."""
    message = re.sub(r"^task\.path='[^']*': ", "", message)
    return re.sub(r"'[^']*'|\brow \d+|\[\d+\]|=\S+", "_", message)[:60]


def assert_one_line(error: HarnessError, case: Case, path: Path) -> None:
    """One line that says which setting, file, row and column; a data problem names the file."""
    message = str(error)
    assert message.strip() and "\n" not in message and "Traceback" not in message, message
    assert message.startswith(("task.", "plugins.tasks.")), message  # the second: a setting the task does not take
    if not case.bad_settings:
        assert message.startswith(f"task.path={str(path)!r}") or message.startswith("task.split="), message
    loading = "could not be read as" in message or "could not be loaded as" in message
    if case.bad_cell is not None and not case.bad_settings and case.damage is None and not loading:
        row, column = case.bad_cell
        assert re.search(rf"\brow {row}\b|\brow 0\b", message), message  # row 0: the first row's form differs
        assert column in message or "every row has the same prompt" in message, message


@pytest.fixture(scope="module", autouse=True)
def datasets_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`datasets` caches what it reads in this module's own folder (the CLI's jobs too), not in ~/.cache."""
    import datasets

    folder = tmp_path_factory.mktemp("hf_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_DATASETS_CACHE", str(folder))
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", folder)
        datasets.disable_progress_bars()
        yield


@functools.cache
def task_config(name: str) -> dict[str, Any]:
    """The task's config as `harness task=<name> debug=smoke` composes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from harness.app import CONFIG_DIR, apply_smoke

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"task={name}", "task.path=x", "debug=smoke"])
    GlobalHydra.instance().clear()
    apply_smoke(cfg)
    return OmegaConf.to_container(cfg.task)


# ---------------------------------------------------------------------------------------------- loaders
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_loaders_build_well_formed_splits_or_stop_with_one_line(case: Case) -> None:
    """The data stage as the runner builds it (the task built from its config, its fingerprint in the key, the
    build through the stage cache): well-formed splits in a complete, sound stage, or one `HarnessError`."""
    from datasets import load_from_disk
    from omegaconf import OmegaConf

    from harness.runner import build_plugin

    with tempfile.TemporaryDirectory() as folder:
        path = write_case(case, Path(folder))
        config = {**task_config(case.task), "path": str(path), **case.settings}
        cache_root = Path(folder) / "cache"
        try:
            task = build_plugin(OmegaConf.create(config))
            stage_config = {**config, "data_fingerprint": task.fingerprint()}
            output = StageCache(cache_root).run("data", stage_config, {}, task.build_datasets)
        except HarnessError as error:
            event(f"{case.task}: stopped: {what_stopped(str(error))}")
            assert_one_line(error, case, path)
            assert not complete_stages(cache_root), "a failed build left its stage marked complete"
        else:
            event(f"{case.task}: built")
            assert complete_stages(cache_root) == [output.path]
            assert_well_formed(load_from_disk(str(output.path)))
        assert_complete_stages_are_sound(cache_root)
        release_stages()  # the stage's use lock, held for the life of a job, not of this test process


# ---------------------------------------------------------------------------------------------- the CLI
cli_values = st.one_of(
    st.integers(min_value=-5, max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet="abc é012_-./'\"=,:[]{}()\\", max_size=12),  # no "~": a home folder is no data
    st.sampled_from(["null", "[]", "[a,b]", "{a: 1}", "''", "true", "1e400", "train"]),
)
CLI_OVERRIDES = (
    "task.split", "task.seed", "task.max_examples", "task.eval_fraction", "task.columns.prompt", "task.path",
    "generation.max_new_tokens",
)  # fmt: skip


@st.composite
def cli_cases(draw: st.DrawFn) -> tuple[Case, list[str]]:
    case = draw(cases(max_rows=6, allow_settings=False))
    overrides = []
    if draw(st.booleans()):
        overrides.append(f"{draw(st.sampled_from(CLI_OVERRIDES))}={draw(cli_values)}")
    return case, overrides


def cli_case(task: str, form: str, rows: list[dict[str, Any]], **fields: Any) -> tuple[Case, list[str]]:
    return Case(task, form, {}, rows, **fields), []


GOOD_ROWS = [valid_row("text", "hf_preferences", i, "the movie") for i in range(6)]
NOT_UTF8 = [*GOOD_ROWS[:3], {**GOOD_ROWS[3], "chosen": f"was {INVALID_UTF8} good"}, *GOOD_ROWS[4:]]


@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: each example is a job of several seconds
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@example(cli=cli_case("hf_preferences", "text", GOOD_ROWS))
@example(cli=cli_case("hf_preferences", "text", NOT_UTF8, bad_cell=(3, "chosen")))
@given(cli=cli_cases())
def test_cli_completes_or_stops_with_one_line(tmp_path_factory: pytest.TempPathFactory, cli: tuple) -> None:
    """`harness task=<task> task.path=<file> ...`: exit 0 with the data stage complete and sound, or exit 2 with
    `error: <one line>`, or Hydra's own short message (exit 1) for an override it cannot take; no traceback."""
    case, overrides = cli
    folder = tmp_path_factory.mktemp("cli")
    path = write_case(case, folder)
    cache_root = folder / "cache"
    split = [f"task.split={case.settings['split']}"] if "split" in case.settings else []
    result = run_harness(
        f"task={case.task}", f"task.path='{path}'", *split, *overrides,
        "debug=smoke", "logger=none", "algorithm=base", "eval=[]",
        f"results_dir={folder / 'results'}", f"cache_dir={cache_root}",
    )  # fmt: skip
    output = result.stdout + result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    event(f"exit {result.returncode}: {what_stopped(lines[-1].removeprefix('error: ')) if lines else ''}")
    assert "Traceback" not in output, result.stderr[-3000:]
    recorded = [json.loads(file.read_text())["status"] for file in (folder / "results").rglob("result.json")]
    if result.returncode == 0:
        data = [stage for stage in complete_stages(cache_root) if stage.parent.name == "data"]
        assert len(data) == 1 and recorded == ["complete"], result.stderr[-3000:]
        from datasets import load_from_disk

        assert_well_formed(load_from_disk(str(data[0])))
    elif result.returncode == 2:
        errors = [line for line in lines if line.startswith("error: ")]
        assert errors == lines[-1:], result.stderr[-3000:]  # one error line, the last
        assert recorded in ([], ["failed"]), recorded  # none: a value refused before the job starts
        if not overrides:  # the data's fault: the line names the file, and the job records its failure
            assert_one_line(HarnessError(lines[-1].removeprefix("error: ")), case, path)
            assert recorded == ["failed"]
    else:
        assert result.returncode == 1 and overrides, result.stderr[-3000:]  # Hydra's: an override it cannot take
        assert lines[-1] == HYDRA_HINT and len(lines) <= 8, result.stderr[-3000:]
    assert_complete_stages_are_sound(cache_root)
