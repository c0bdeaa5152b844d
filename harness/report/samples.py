"""What each method actually wrote: the sample browser of report.html (pick a prompt, see every method's completion
side by side with its per-sample scores, sort by where the methods disagree, search prompts) and the same samples as
a W&B table with one column per method (`comparison/samples`).

Rows line up by prompt. Every job of a sweep is evaluated on the same prompts in the same order, so a job's row i is
every other job's row i; where a job's prompts differ (a folder of runs with other evaluation settings), rows are
matched by prompt text (and occurrence, for a prompt asked twice) and the page says so.

Disagreement: for one prompt and one seed, the spread (max - min) across methods of the per-sample quality score,
`gold_reward` where the samples have it, else a held-out judge's `judge_score`, else a verifier's `correct` (a task
whose answers are checked: eval=pass_at_k). The prompts where the methods disagree most are where reading the
completions teaches the most.

Scores are the per-sample numbers and verdicts the suites annotate; text is shown only for the short fields named in
TEXT_KEYS (a verifier's final `answer`), not a baseline's completion or a judge's reasoning.

Seeds: the page shows one seed's samples at a time (default: the lowest). A mean over seeds would mix scores of
different completions into numbers no completion on screen has. Picking another seed keeps the prompt on screen (or,
where that seed has no sample for it, the nearest prompt that has one, and says so).

Screens: on a narrow one (a phone) the prompt list sits above the completions, which stack one per row; on a wide
one they stand side by side.

Safety: completions are model output. They are embedded as JSON in a `<script type="application/json">` with every
"<" escaped, and the page's script renders them with `textContent` only: no completion can become markup or script.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.report.aggregate import finite
from harness.report.sections import Section, job_files
from harness.results import SAMPLES_FILE

# the per-sample quality score: the first one the samples have (correct: the task's verifier, eval=pass_at_k)
QUALITY_KEYS = ("gold_reward", "judge_score", "correct")
TEXT_KEYS = ("answer",)  # short text shown beside the scores: the final answer a verifier read (eval=pass_at_k)
SCORE_ORDER = (
    "gold_reward",
    "judge_score",
    "correct",
    "answer",
    "format",
    "proxy_reward",
    "seq_kl",
    "completion_tokens",
    "grammatical",
    "win_rate_outcome",
    "judge_outcome",
    "proxy_outcome",
    "llm_judge_outcome",
)  # the rest follow alphabetically
LABELS = {
    "gold_reward": "gold reward",
    "judge_score": "judge score",
    "proxy_reward": "proxy reward",
    "seq_kl": "KL (sequence)",
    "completion_tokens": "length (tokens)",
    "win_rate_outcome": "win vs baseline",
    "correct": "correct (verifier)",
    "answer": "final answer",
    "format": "format reward",
}
NOT_SCORES = ("prompt", "completion")
MAX_COMPLETION_CHARS = 2_000  # a longer completion is cut in the page (the W&B table keeps it whole)
# Prompt and completion characters the page embeds, all seeds and methods together: 256 prompts x 18 jobs of
# 500-character completions fit; beyond it the page keeps the first prompts and says how many it left out.
MAX_PAGE_CHARS = 4_000_000
MAX_TABLE_ROWS = 10_000  # wandb.Table's own row limit
TOP_IN_MARKDOWN = 5


@dataclass
class JobSamples:
    """One job's samples.jsonl: its method (the report's group label), seed and rows."""

    method: str
    seed: str
    rows: list[dict[str, Any]]
    source: str = ""  # the job folder's name, for the notes


@dataclass
class SampleTable:
    """Every job's samples lined up by prompt."""

    methods: list[str]
    seeds: list[str]  # lowest first
    prompts: list[str]
    cells: dict[tuple[str, str], list[dict[str, Any] | None]]  # (method, seed) -> its sample per prompt, or None
    scores: list[str]  # the per-sample score keys the samples have, in display order
    kinds: dict[str, str]  # score key -> bool | int | float (how the page formats it)
    quality: str | None  # the score disagreement is measured on (QUALITY_KEYS); None: none of them
    notes: list[str] = field(default_factory=list)

    def sample(self, index: int, method: str, seed: str) -> dict[str, Any] | None:
        column = self.cells.get((method, seed))
        return column[index] if column is not None else None

    def quality_scores(self, index: int, seed: str) -> list[float | None]:
        """Each method's quality score for prompt `index` at `seed` (None: no sample, or no finite score)."""
        scores: list[float | None] = []
        for method in self.methods:
            sample = self.sample(index, method, seed)
            scores.append(number(sample.get(self.quality)) if sample is not None and self.quality else None)
        return scores

    def spread(self, index: int, seed: str) -> float | None:
        return disagreement(self.quality_scores(index, seed))

    def by_disagreement(self, seed: str) -> list[int]:
        """Prompt indices, the largest spread first; prompts without one last; ties in evaluation order."""
        spreads = [self.spread(index, seed) for index in range(len(self.prompts))]
        return sorted(range(len(spreads)), key=lambda i: (spreads[i] is None, -(spreads[i] or 0.0), i))


def number(value: Any) -> float | None:
    """A finite number as float; None for anything else (a bool is a verdict, not a score to take a spread of)."""
    return float(value) if finite(value) else None


def disagreement(scores: Sequence[float | None]) -> float | None:
    """How far apart the methods' scores for one prompt are: max - min over those present; None with fewer than two
    (one method alone cannot disagree)."""
    present = [value for value in scores if value is not None]
    return max(present) - min(present) if len(present) >= 2 else None


def seed_order(seed: str) -> tuple[int, int, str]:
    return (0, int(seed), "") if seed.lstrip("-").isdigit() else (1, 0, seed)


def prompt_text(prompt: Any) -> str:
    """A prompt as text: itself, or the JSON of a structured one (a list of chat messages)."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)


def align(jobs: Sequence[JobSamples]) -> SampleTable:
    """Line up every job's samples by prompt: by row where all jobs have the same prompts in the same order (the
    sweep's contract), else by prompt text and occurrence, with a note saying so."""
    notes: list[str] = []
    by_column: dict[tuple[str, str], JobSamples] = {}
    for job in jobs:
        if (job.method, job.seed) in by_column:
            kept = by_column[(job.method, job.seed)].source
            notes.append(f"{job.source}: a second job of {job.method} seed {job.seed}; the samples of {kept} are shown")
            continue
        by_column[(job.method, job.seed)] = job
    methods = list(dict.fromkeys(job.method for job in by_column.values()))
    seeds = sorted({job.seed for job in by_column.values()}, key=seed_order)
    kept_jobs = list(by_column.values())
    asked = {key: [prompt_text(row.get("prompt", "")) for row in job.rows] for key, job in by_column.items()}
    reference = asked[(kept_jobs[0].method, kept_jobs[0].seed)] if kept_jobs else []
    differ = [job.source for key, job in by_column.items() if asked[key] != reference]
    cells: dict[tuple[str, str], list[dict[str, Any] | None]] = {}
    if not differ:
        prompts = reference
        cells = {key: list(job.rows) for key, job in by_column.items()}
    else:
        notes.append(
            f"The jobs' evaluation prompts differ ({', '.join(differ)}: other prompts or another order than "
            f"{kept_jobs[0].source}): samples are matched by prompt text."
        )
        keyed: dict[tuple[str, str], dict[tuple[str, int], dict[str, Any]]] = {}
        order: dict[tuple[str, int], None] = {}
        for key, job in by_column.items():
            seen: dict[str, int] = {}
            keyed[key] = {}
            for text, row in zip(asked[key], job.rows, strict=True):
                occurrence = (text, seen.get(text, 0))
                seen[text] = occurrence[1] + 1
                keyed[key][occurrence] = row
                order.setdefault(occurrence, None)
        prompts = [text for text, _ in order]
        cells = {key: [keyed[key].get(occurrence) for occurrence in order] for key in by_column}
    scores, kinds = _score_keys([row for job in kept_jobs for row in job.rows])
    quality = next((key for key in QUALITY_KEYS if key in scores), None)
    if quality is None and methods:
        notes.append(
            f"No per-sample quality score ({' or '.join(QUALITY_KEYS)}) in the samples: the methods' disagreement "
            "cannot be measured."
        )
    return SampleTable(methods, seeds, prompts, cells, scores, kinds, quality, notes)


def _score_keys(rows: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """The keys whose values are all numbers or booleans (None aside), and those of TEXT_KEYS whose values are all
    text, in display order, and how each is shown (bool, int, float, text)."""
    values: dict[str, list[Any]] = {}
    for row in rows:
        for key, value in row.items():
            if key not in NOT_SCORES:
                values.setdefault(key, []).append(value)
    kinds: dict[str, str] = {}
    for key, seen in values.items():
        present = [value for value in seen if value is not None]
        if present and key in TEXT_KEYS and all(isinstance(value, str) for value in present):
            kinds[key] = "text"
            continue
        if not present or not all(isinstance(value, int | float) for value in present):
            continue  # text (a baseline's completion, a judge's verdict) or nothing
        if all(isinstance(value, bool) for value in present):
            kinds[key] = "bool"
        elif all(isinstance(value, int) and not isinstance(value, bool) for value in present):
            kinds[key] = "int"
        else:
            kinds[key] = "float"
    rank = {key: position for position, key in enumerate(SCORE_ORDER)}
    ordered = sorted(kinds, key=lambda key: (rank.get(key, len(rank)), key))
    return ordered, kinds


def read_samples(path: Path) -> list[dict[str, Any]]:
    """The rows of a samples.jsonl; ValueError naming the line that is not a JSON object."""
    rows = []
    for number_, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number_} is not JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path} line {number_} is {type(row).__name__}, expected a JSON object")
        rows.append(row)
    return rows


def job_samples(groups: Sequence[Any]) -> tuple[list[JobSamples], list[str]]:
    """The samples.jsonl of every complete job of `groups` (the report's groups), and a note per job left out (no
    file, or one that does not read). What the sample browser, the arena and its human suite all read."""
    jobs: list[JobSamples] = []
    notes: list[str] = []
    for group in groups:
        for found in job_files(group, SAMPLES_FILE, read_samples):
            if found.missing:
                notes.append(f"{found.name}: no {SAMPLES_FILE}")
            elif found.error is not None:
                notes.append(f"{found.name}: left out: {found.error}")
            else:
                jobs.append(JobSamples(group.label, str(found.job.seed), found.content, found.name))
    return jobs, notes


def collect(comparison: Any) -> SampleTable | None:
    """The samples of every complete job of the comparison, lined up (None: no job has samples)."""
    jobs, notes = job_samples(comparison.groups)
    if not jobs:
        return None
    table = align(jobs)
    table.notes[:0] = notes
    return table


# -- the W&B table and the markdown ------------------------------------------------------------------------------
def wandb_table(table: SampleTable) -> tuple[list[str], list[list[Any]]]:
    """One row per prompt and seed: the prompt, the seed, then per method its completion and its scores
    (`<method>/<score>`), and the spread of the quality score across methods."""
    columns = ["prompt", "seed"]
    for method in table.methods:
        columns += [method, *(f"{method}/{key}" for key in table.scores)]
    if table.quality:
        columns.append(f"spread/{table.quality}")
    rows: list[list[Any]] = []
    for seed in table.seeds:
        for index, prompt in enumerate(table.prompts):
            row: list[Any] = [prompt, seed]
            for method in table.methods:
                sample = table.sample(index, method, seed) or {}
                row += [sample.get("completion"), *(_plain(sample.get(key)) for key in table.scores)]
            if table.quality:
                row.append(table.spread(index, seed))
            rows.append(row)
    return columns, rows[:MAX_TABLE_ROWS]


def _plain(value: Any) -> Any:
    """A score as W&B and JSON take it: a non-finite float becomes None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _markdown_cell(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


def to_markdown(table: SampleTable) -> str:
    seed = table.seeds[0]
    lines = [
        f"{len(table.prompts)} prompts x {len(table.methods)} methods ({', '.join(table.methods)}), "
        f"seeds {', '.join(table.seeds)}. Every completion, side by side with its scores, is in report.html's sample "
        "browser and in the W&B comparison run's `comparison/samples` table.",
    ]
    if table.quality and (ranked := [i for i in table.by_disagreement(seed) if table.spread(i, seed) is not None]):
        lines += [
            "",
            f"Where the methods disagree most (seed {seed}; spread: max - min of {table.quality} across methods):",
            "",
            "| prompt | spread | highest | lowest |",
            "|---|---|---|---|",
        ]
        for index in ranked[:TOP_IN_MARKDOWN]:
            paired = zip(table.methods, table.quality_scores(index, seed), strict=True)
            scores = {method: score for method, score in paired if score is not None}
            high, low = max(scores, key=scores.__getitem__), min(scores, key=scores.__getitem__)
            lines.append(
                f"| {_markdown_cell(table.prompts[index])} | {table.spread(index, seed):.3f} | "
                f"{_markdown_cell(high)} ({scores[high]:.3f}) | {_markdown_cell(low)} ({scores[low]:.3f}) |"
            )
    if table.notes:
        lines += ["", *(f"- {_markdown_cell(note, limit=400)}" for note in table.notes)]
    return "\n".join(lines) + "\n"


# -- the page ----------------------------------------------------------------------------------------------------
def page_data(table: SampleTable) -> dict[str, Any]:
    """What the browser's script reads: methods, seeds, score keys, and per prompt its text, the spread at each
    seed and each seed's samples per method (`{"c": completion, "s": [scores], "t": cut}` or null), within
    MAX_PAGE_CHARS."""
    prompts: list[dict[str, Any]] = []
    used = 0
    for index, text in enumerate(table.prompts):
        per_seed = []
        for seed in table.seeds:
            samples = []
            for method in table.methods:
                sample = table.sample(index, method, seed)
                if sample is None:
                    samples.append(None)
                    continue
                completion = prompt_text(sample.get("completion", ""))
                entry: dict[str, Any] = {"c": completion[:MAX_COMPLETION_CHARS]}
                entry["s"] = [_plain(sample.get(key)) for key in table.scores]
                if len(completion) > MAX_COMPLETION_CHARS:
                    entry["t"] = True
                samples.append(entry)
            per_seed.append(samples)
        size = len(text) + sum(len(entry["c"]) for samples in per_seed for entry in samples if entry)
        if prompts and used + size > MAX_PAGE_CHARS:
            break
        used += size
        spreads = [table.spread(index, seed) for seed in table.seeds]
        prompts.append({"text": text, "spread": spreads, "samples": per_seed})
    notes = list(table.notes)
    if len(prompts) < len(table.prompts):
        notes.append(
            f"The page shows the first {len(prompts)} of {len(table.prompts)} prompts (it embeds at most "
            f"{MAX_PAGE_CHARS:,} characters of samples); the W&B table has them all."
        )
    return {
        "methods": table.methods,
        "seeds": table.seeds,
        "scores": table.scores,
        "labels": [LABELS.get(key, key.replace("_", " ")) for key in table.scores],
        "kinds": [table.kinds[key] for key in table.scores],
        "quality": table.quality,
        "max_chars": MAX_COMPLETION_CHARS,
        "prompts": prompts,
        "notes": notes,
    }


def embed_json(data: Any) -> str:
    """JSON to sit inside a <script> element: every "<" escaped, so no text in it can close the element."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")


_STYLE = """
#sample-browser .sb-controls { display: flex; flex-wrap: wrap; gap: .4rem 1.2rem; align-items: center;
  margin: .6rem 0; }
#sample-browser .sb-controls label { font-size: .9rem; }
#sample-browser input.sb-search { max-width: 100%; box-sizing: border-box; }
#sample-browser .sb-layout { display: grid; grid-template-columns: minmax(14rem, 22rem) minmax(0, 1fr); gap: 1rem; }
#sample-browser ol.sb-prompts { position: relative; list-style: none; margin: 0; padding: 0; max-height: 36rem;
  overflow-y: auto; border: 1px solid #ddd; }
#sample-browser button.sb-prompt { display: flex; gap: .5rem; width: 100%; text-align: left; border: 0;
  border-bottom: 1px solid #eee; background: none; padding: .3rem .5rem; font: inherit; font-size: .85rem;
  cursor: pointer; }
#sample-browser button.sb-prompt[aria-pressed="true"] { background: #e8f0fe; }
#sample-browser .sb-spread { color: #555; font-variant-numeric: tabular-nums; min-width: 3.2rem; }
#sample-browser .sb-text { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#sample-browser .sb-prompt-text { white-space: pre-wrap; overflow-wrap: anywhere; margin-top: 0; }
#sample-browser .sb-notice { color: #7a4d00; background: #fff6e0; padding: .3rem .5rem; border-radius: 4px; }
#sample-browser .sb-methods { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(15rem, 100%), 1fr));
  gap: .8rem; }
#sample-browser .sb-method { border: 1px solid #ddd; border-radius: 4px; padding: .5rem .7rem; min-width: 0; }
#sample-browser .sb-method h4 { margin: 0 0 .3rem; }
#sample-browser .sb-completion { white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, monospace;
  font-size: .85rem; background: #fafafa; padding: .4rem; max-height: 24rem; overflow-y: auto; }
#sample-browser .sb-empty { color: #888; font-style: italic; }
#sample-browser table.sb-scores { font-size: .82rem; margin: .4rem 0 0; width: 100%; }
#sample-browser table.sb-scores th { font-weight: normal; color: #555; text-align: left; }
#sample-browser td.best { font-weight: 700; background: #eef7ee; }
#sample-browser td.worst { background: #fbeeee; }
/* a narrow screen (a phone): the prompt list above the completions, which stack one per row */
@media (max-width: 48rem) {
  #sample-browser .sb-layout { grid-template-columns: minmax(0, 1fr); }
  #sample-browser ol.sb-prompts { max-height: 15rem; }
}
"""

# Renders only with createElement / textContent: the data is model output and never becomes markup.
_SCRIPT = """
(() => {
  "use strict";
  const root = document.getElementById("sample-browser");
  const data = JSON.parse(document.getElementById("sample-browser-data").textContent);
  const search = root.querySelector("input.sb-search");
  const sort = root.querySelector("select.sb-sort");
  const seedPick = root.querySelector("select.sb-seed");
  const list = root.querySelector("ol.sb-prompts");
  const count = root.querySelector(".sb-count");
  const detail = root.querySelector(".sb-detail");
  const qualityAt = data.scores.indexOf(data.quality);
  let selected = 0;
  let notice = "";  // why the prompt on screen is not the one chosen (a seed without it), until the next action

  const make = (tag, className, text) => {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  };
  const format = (value, kind) => {
    if (value === null || value === undefined) return "\\u2013";
    if (kind === "bool") return value ? "yes" : "no";
    if (kind === "int" || kind === "text") return String(value);
    return Number(value).toFixed(3);
  };
  const seed = () => Number(seedPick.value);
  const spread = (i) => data.prompts[i].spread[seed()];
  const hasSamples = (i) => data.prompts[i].samples[seed()].some((sample) => sample !== null);

  data.seeds.forEach((name, i) => seedPick.append(new Option(`seed ${name}`, String(i))));
  if (data.quality === null) sort.querySelector('option[value="disagreement"]').disabled = true;
  if (data.notes.length) {
    const notes = root.querySelector("ul.sb-notes");
    data.notes.forEach((note) => notes.append(make("li", "", note)));
  }

  function visible() {
    const needle = search.value.toLowerCase();
    const shown = [];
    data.prompts.forEach((prompt, i) => { if (prompt.text.toLowerCase().includes(needle)) shown.push(i); });
    if (sort.value === "disagreement") {
      shown.sort((a, b) => {
        const x = spread(a), y = spread(b);
        if (x === null || y === null) return (x === null) - (y === null) || a - b;
        return y - x || a - b;
      });
    }
    return shown;
  }

  function card(method, sample, present) {
    const box = make("section", "sb-method");
    box.dataset.method = method;
    box.append(make("h4", "", method));
    if (!sample) {
      box.append(make("p", "sb-missing meta", `no sample for seed ${data.seeds[seed()]}`));
      return box;
    }
    box.append(sample.c === "" ? make("div", "sb-completion sb-empty", "(empty completion)")
                               : make("div", "sb-completion", sample.c));
    if (sample.t) box.append(make("p", "sb-cut meta", `(cut at ${data.max_chars} characters)`));
    const scores = make("table", "sb-scores");
    data.scores.forEach((key, k) => {
      const row = make("tr");
      row.dataset.key = key;
      const value = sample.s[k];
      const cell = make("td", "", format(value, data.kinds[k]));
      if (value !== null) cell.dataset.value = String(value);
      if (k === qualityAt && value !== null && present.length > 1 && Math.max(...present) > Math.min(...present)) {
        if (value === Math.max(...present)) cell.classList.add("best");
        if (value === Math.min(...present)) cell.classList.add("worst");
      }
      row.append(make("th", "", data.labels[k]), cell);
      scores.append(row);
    });
    box.append(scores);
    return box;
  }

  function renderDetail(i) {
    if (i < 0) {
      detail.replaceChildren(make("p", "meta", "No prompt matches the search."));
      return;
    }
    const prompt = data.prompts[i];
    const facts = [`prompt #${i + 1}`, `seed ${data.seeds[seed()]}`];
    if (data.quality !== null) facts.push(`spread of ${data.quality} across methods: ${format(spread(i), "float")}`);
    const cards = make("div", "sb-methods");
    const samples = prompt.samples[seed()];
    const present = qualityAt < 0 ? [] : samples.filter((sample) => sample && sample.s[qualityAt] !== null)
      .map((sample) => sample.s[qualityAt]);
    data.methods.forEach((method, m) => cards.append(card(method, samples[m], present)));
    const heading = make("h3", "sb-prompt-text", prompt.text);
    const shownNotice = notice ? [make("p", "meta sb-notice", notice)] : [];
    shownNotice.forEach((note) => note.setAttribute("role", "status"));
    detail.replaceChildren(...shownNotice, heading, make("p", "meta sb-facts", facts.join(" \\u00b7 ")), cards);
  }

  // keeps the chosen prompt in view inside the list (not the page: the list scrolls on its own)
  function reveal() {
    const button = list.querySelector('button[aria-pressed="true"]');
    if (!button) return;
    const top = button.offsetTop, height = button.offsetHeight;
    if (top < list.scrollTop || top + height > list.scrollTop + list.clientHeight) {
      list.scrollTop = top - (list.clientHeight - height) / 2;
    }
  }

  // the shown prompt nearest to `i` in evaluation order that has a sample at the current seed (the later on a tie)
  function nearestWithSamples(i, shown) {
    const candidates = shown.filter(hasSamples);
    if (!candidates.length) return null;
    const distance = (j) => Math.abs(j - i);
    return candidates.reduce((best, j) => (distance(j) < distance(best) ||
                                           (distance(j) === distance(best) && j > best) ? j : best));
  }

  function render() {
    const shown = visible();
    if (shown.length && !shown.includes(selected)) selected = shown[0];
    list.replaceChildren(...shown.map((i) => {
      const button = make("button", "sb-prompt");
      button.type = "button";
      button.dataset.index = String(i);
      button.setAttribute("aria-pressed", String(i === selected));
      if (data.quality !== null) button.append(make("span", "sb-spread", format(spread(i), "float")));
      button.append(make("span", "sb-text", data.prompts[i].text));
      button.title = data.prompts[i].text;
      button.addEventListener("click", () => { selected = i; notice = ""; render(); });
      const item = make("li");
      item.append(button);
      return item;
    }));
    count.textContent = `${shown.length} of ${data.prompts.length} prompts`;
    renderDetail(shown.length ? selected : -1);
  }

  search.addEventListener("input", () => { notice = ""; render(); });
  // a new order shows its first prompt: the one where the methods disagree most, when sorted so
  sort.addEventListener("change", () => { selected = visible()[0] ?? selected; notice = ""; render(); reveal(); });
  // a new seed keeps the prompt; one the seed has no sample for gives way to the nearest that has, and says so
  seedPick.addEventListener("change", () => {
    notice = "";
    const nearest = hasSamples(selected) ? selected : nearestWithSamples(selected, visible());
    if (nearest !== null && nearest !== selected) {
      notice = `Seed ${data.seeds[seed()]} has no sample for prompt #${selected + 1}: ` +
               `showing prompt #${nearest + 1}, the nearest that has.`;
      selected = nearest;
    }
    render();
    reveal();
  });
  render();
})();
"""


def to_html(table: SampleTable) -> str:
    data = page_data(table)
    if table.quality:
        how = (
            f"Disagreement: the spread (max − min) of {table.quality} across methods for the prompt, at the chosen "
            "seed; the highest and lowest are marked."
        )
    else:
        how = f"No per-sample quality score ({' or '.join(QUALITY_KEYS)}): prompts cannot be sorted by disagreement."
    seeds = (
        "One seed's samples at a time (default: the lowest seed); scores are that seed's, not means over seeds."
        if len(table.seeds) > 1
        else f"One seed ({table.seeds[0]})."
    )
    return "\n".join(
        [
            f"<style>{_STYLE}</style>",
            '<div id="sample-browser">',
            f'<p class="meta">Every method\'s completion for one prompt, side by side with its per-sample scores. '
            f"{how} {seeds}</p>",
            '<ul class="sb-notes meta"></ul>',
            '<div class="sb-controls">',
            '<label>Search prompts <input type="search" class="sb-search" placeholder="substring, any case"></label>',
            '<label>Order <select class="sb-sort"><option value="order" selected>evaluation order</option>'
            '<option value="disagreement">where methods disagree most</option></select></label>',
            '<label>Seed <select class="sb-seed"></select></label>',
            '<span class="sb-count meta"></span>',
            "</div>",
            '<div class="sb-layout"><ol class="sb-prompts"></ol><div class="sb-detail"></div></div>',
            f'<script type="application/json" id="sample-browser-data">{embed_json(data)}</script>',
            f"<script>{_SCRIPT}</script>",
            "</div>",
        ]
    )


def samples_section(comparison: Any) -> Section | None:
    """The report's "Samples" section (markdown, the browser, the W&B table); None when no job wrote samples."""
    table = collect(comparison)
    if table is None or not table.prompts:
        return None
    summary: dict[str, float] = {"samples/prompts": float(len(table.prompts))}
    if table.quality:
        spreads = [s for i in range(len(table.prompts)) if (s := table.spread(i, table.seeds[0])) is not None]
        if spreads:
            summary[f"samples/mean_spread/{table.quality}"] = sum(spreads) / len(spreads)
    return Section(
        key="samples",
        title="Samples side by side",
        markdown=to_markdown(table),
        html=to_html(table),
        tables={"samples": wandb_table(table)},
        summary=summary,
    )
