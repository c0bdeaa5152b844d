"""The human suite from arena votes: Bradley-Terry ratings and their intervals, win rates, agreement between raters
and with the gold reward, the report's `human` section, and votes exported as preferences that train DPO."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import time
import uuid
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import HARNESS, run_harness
from smoke_sweep import shared_smoke_sweep

from harness.arena.export import export_preferences
from harness.arena.ratings import (
    ELO_PER_NAT,
    bradley_terry,
    gold_agreement,
    rater_agreement,
    to_elo,
    win_rates,
)
from harness.arena.report import human_section, section_from_votes
from harness.arena.rules import same_text
from harness.arena.votes import Vote
from harness.errors import HarnessError


def vote(method_a: str, method_b: str, outcome: str, rater: str = "r", prompt_index: int = 0, **fields: Any) -> Vote:
    texts = {"prompt": "the plot", "completion_a": f"{method_a} wrote", "completion_b": f"{method_b} wrote"}
    return Vote(rater, prompt_index, method_a=method_a, method_b=method_b, outcome=outcome, **{**texts, **fields})


def simulate(strengths: dict[str, float], n: int, rng: np.random.Generator) -> list[Vote]:
    """n votes on uniformly drawn pairs, each won by i with the Bradley-Terry probability σ(θ_i − θ_j)."""
    methods = sorted(strengths)
    votes = []
    for _ in range(n):
        i, j = sorted(rng.choice(len(methods), size=2, replace=False))
        a, b = methods[i], methods[j]
        p_a = 1.0 / (1.0 + math.exp(-(strengths[a] - strengths[b])))
        votes.append(vote(a, b, "a" if rng.random() < p_a else "b"))
    return votes


def centred(strengths: dict[str, float]) -> dict[str, float]:
    mean = sum(strengths.values()) / len(strengths)
    return {method: value - mean for method, value in strengths.items()}


# -- Bradley-Terry ------------------------------------------------------------------------------------------------
TRUE = {"dpo": 1.0, "ppo": 0.4, "sft": -0.3, "base": -1.1}


def test_ratings_recover_known_strengths_inside_their_intervals() -> None:
    votes = simulate(TRUE, 3000, np.random.default_rng(0))
    ratings = bradley_terry(votes, seed=0)
    assert [r.method for r in ratings] == ["dpo", "ppo", "sft", "base"]
    truth = centred(TRUE)
    for rating in ratings:
        assert rating.low <= truth[rating.method] <= rating.high, rating
        assert abs(rating.log_strength - truth[rating.method]) < 0.1
        assert rating.high - rating.low < 0.35  # 1500 votes per method pin a log-strength to about ±0.1
        assert rating.votes == sum(rating.method in (v.method_a, v.method_b) for v in votes)
    assert sum(r.rating for r in ratings) / len(ratings) == pytest.approx(1000.0)  # the anchor: mean 1000
    for rating in ratings:  # 400 points per factor of 10 in the odds
        assert rating.rating == pytest.approx(1000.0 + ELO_PER_NAT * rating.log_strength)
        assert ELO_PER_NAT * math.log(10) == pytest.approx(400.0)


def test_bootstrap_intervals_cover_the_truth_about_as_often_as_they_claim() -> None:
    """20 small arenas (200 votes each) of four methods: the 95% intervals should hold the true log-strength in
    about 95% of the 80 cases; a percentile bootstrap at this size may fall a little short, not far."""
    rng = np.random.default_rng(1)
    truth = centred(TRUE)
    covered = 0
    for k in range(20):
        for rating in bradley_terry(simulate(TRUE, 200, rng), resamples=400, seed=k):
            covered += rating.low <= truth[rating.method] <= rating.high
    assert covered / 80 >= 0.85


def test_bootstrap_is_seeded() -> None:
    votes = simulate(TRUE, 300, np.random.default_rng(2))
    assert bradley_terry(votes, seed=5) == bradley_terry(votes, seed=5)
    assert bradley_terry(votes, seed=5) != bradley_terry(votes, seed=6)


def test_a_tie_is_half_a_win_to_each_side() -> None:
    """Two ties between A and B weigh as one win each way: the same fit as one A-win plus one B-win. And A with
    300 wins, 200 ties and 100 losses against B has 400 vs 200 half-win units: the odds are 2:1, θ_A − θ_B = ln 2
    (up to the weak prior's pull toward 0, well under 1% here)."""
    base = [vote("a", "b", "a")] * 5 + [vote("a", "b", "b")] * 3
    with_ties = bradley_terry(base + [vote("a", "b", "tie")] * 2, resamples=10)
    with_halves = bradley_terry([*base, vote("a", "b", "a"), vote("a", "b", "b")], resamples=10)
    assert [r.log_strength for r in with_ties] == pytest.approx([r.log_strength for r in with_halves], abs=1e-9)
    ratio = [vote("a", "b", "a")] * 300 + [vote("a", "b", "tie")] * 200 + [vote("a", "b", "b")] * 100
    a, b = bradley_terry(ratio, resamples=10)
    assert a.log_strength - b.log_strength == pytest.approx(math.log(2), rel=0.01)
    only_ties = bradley_terry([vote("a", "b", "tie")] * 10, resamples=50)
    assert [r.rating for r in only_ties] == pytest.approx([1000.0, 1000.0])


def test_a_method_that_always_wins_stays_finite_and_on_top() -> None:
    votes = [vote("a", "b", "a")] * 30 + [vote("a", "c", "a")] * 30 + [vote("b", "c", "a"), vote("b", "c", "b")] * 10
    ratings = {r.method: r for r in bradley_terry(votes)}
    winner = ratings["a"]
    assert all(math.isfinite(x) for x in (winner.log_strength, winner.low, winner.high))
    assert winner.log_strength > ratings["b"].log_strength + 2 and winner.log_strength < 10
    assert ratings["b"].log_strength == pytest.approx(ratings["c"].log_strength)
    assert winner.rating == pytest.approx(to_elo(winner.log_strength))


def test_win_rates_count_ties_half() -> None:
    votes = [vote("a", "b", "a"), vote("a", "b", "tie"), vote("a", "c", "b"), vote("b", "c", "b")]
    records = win_rates(votes)
    assert (records["a"].wins, records["a"].ties, records["a"].losses) == (1, 1, 1)
    assert records["a"].win_rate == pytest.approx(1.5 / 3)
    assert (records["c"].wins, records["c"].votes, records["c"].win_rate) == (2, 2, 1.0)
    assert records["b"].win_rate == pytest.approx(0.5 / 3)


# -- agreement between raters -------------------------------------------------------------------------------------
def test_krippendorff_alpha_on_a_worked_example() -> None:
    """Three items with two or more raters (outcomes as categories a, b, t):
    item 1: a, a, b   item 2: t, t   item 3: a, b   (item 4 has one rater: not pairable, left out).
    Coincidences (each ordered pair of raters on an item with m values adds 1/(m − 1)):
      item 1 (m = 3): a-a twice -> o_aa += 1; a-b and b-a four times -> o_ab += 1, o_ba += 1
      item 2 (m = 2): t-t twice -> o_tt += 2;  item 3: a-b, b-a -> o_ab += 1, o_ba += 1
    o_aa = 1, o_ab = o_ba = 2, o_tt = 2: n_a = 3, n_b = 2, n_t = 2, n = 7.
    alpha = 1 − (n − 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k = 1 − 6 · 4 / (49 − 9 − 4 − 4) = 1 − 24/32 = 0.25.
    Rater pairs: item 1 has 3 (1 alike), items 2 and 3 one each (alike, not): 2 of 5 agree = 0.4."""
    votes = [
        vote("x", "y", "a", rater="r1", prompt_index=1),
        vote("x", "y", "a", rater="r2", prompt_index=1),
        vote("x", "y", "b", rater="r3", prompt_index=1),
        vote("x", "y", "tie", rater="r1", prompt_index=2),
        vote("x", "y", "tie", rater="r2", prompt_index=2),
        vote("x", "y", "a", rater="r1", prompt_index=3),
        vote("x", "y", "b", rater="r2", prompt_index=3),
        vote("x", "y", "a", rater="r1", prompt_index=4),
    ]
    agreement = rater_agreement(votes)
    assert (agreement.items, agreement.rater_pairs, agreement.agreeing_pairs) == (3, 5, 2)
    assert agreement.observed == pytest.approx(0.4)
    assert agreement.alpha == pytest.approx(0.25)


def test_rater_agreement_edges() -> None:
    perfect = [vote("x", "y", o, rater=r, prompt_index=i) for i, o in enumerate("aab") for r in ("r1", "r2")]
    assert rater_agreement(perfect).alpha == pytest.approx(1.0)
    assert rater_agreement(perfect).observed == 1.0
    one_category = [vote("x", "y", "a", rater=r, prompt_index=i) for i in range(3) for r in ("r1", "r2")]
    assert math.isnan(rater_agreement(one_category).alpha)  # no variation: chance agreement is all there is
    # other completions (another seed's samples) are another item; a rater's latest vote on an item counts
    apart = [vote("x", "y", "a", rater="r1"), vote("x", "y", "b", rater="r2", completion_a="other")]
    assert rater_agreement(apart).items == 0 and math.isnan(rater_agreement(apart).observed)
    changed = [
        vote("x", "y", "b", rater="r1", created_at=1.0),
        vote("x", "y", "a", rater="r2", created_at=2.0),
        vote("x", "y", "a", rater="r1", created_at=3.0),
    ]
    assert (rater_agreement(changed).rater_pairs, rater_agreement(changed).agreeing_pairs) == (1, 1)


# -- agreement with the gold reward -------------------------------------------------------------------------------
def test_gold_agreement_on_hand_made_rows() -> None:
    """Scored: votes 1, 2, 5 and 9, of which 1, 5 and 9 chose the higher score: 3 of 4."""
    samples = {
        "A": {0: [{"completion": "good", "gold_reward": 0.9}, {"completion": "same", "gold_reward": 0.5},
                  {"completion": "p", "judge_score": 2.0}]},
        "B": {0: [{"completion": "bad", "gold_reward": 0.1}, {"completion": "also", "gold_reward": 0.5},
                  {"completion": "q", "judge_score": 3.0}],
              1: [{"completion": "meh", "gold_reward": 0.95}]},
    }  # fmt: skip
    rows = lambda method: samples.get(method, {})  # noqa: E731
    votes = [
        vote("A", "B", "a", completion_a="good", completion_b="bad"),  # 1: agrees
        vote("A", "B", "b", rater="s", completion_a="good", completion_b="bad"),  # 2: disagrees
        vote("A", "B", "tie", rater="t", completion_a="good", completion_b="bad"),  # 3: a tie, not counted
        vote("A", "B", "a", prompt_index=1, completion_a="same", completion_b="also"),  # 4: equal gold
        vote("A", "B", "b", prompt_index=2, completion_a="p", completion_b="q"),  # 5: the judge decides: agrees
        vote("A", "B", "a", completion_a="changed", completion_b="bad"),  # 6: not what the samples hold
        vote("A", "B", "a", prompt_index=7, completion_a="good", completion_b="bad"),  # 7: no such row
        vote("A", "C", "a", completion_a="good", completion_b="c"),  # 8: no samples of C
        vote("A", "B", "b", seed=1, completion_a="good", completion_b="meh"),  # 9: A's seed 0 shown: agrees
    ]
    result = gold_agreement(votes, rows)
    assert (result.agreeing, result.scored, result.equal, result.unmatched) == (3, 4, 1, 3)
    assert result.rate == 0.75 and result.score == "gold_reward or judge_score"
    z = 1.959963984540054  # Wilson (1927): (p + z²/2n ± z sqrt(p(1 − p)/n + z²/4n²)) / (1 + z²/n)
    centre, half = (0.75 + z * z / 8) / (1 + z * z / 4), z / (1 + z * z / 4) * math.sqrt(0.75 * 0.25 / 4 + z * z / 64)
    assert (result.low, result.high) == pytest.approx((centre - half, centre + half))
    assert gold_agreement(votes[:1], rows).score == "gold_reward"


# -- export ---------------------------------------------------------------------------------------------------------
def test_export_joins_text_completions_as_the_model_read_them(tmp_path: Path) -> None:
    votes = [
        vote("base", "dpo", "b", prompt="the soundtrack", completion_a="seemed boring .", completion_b="was great ."),
        vote("base", "dpo", "tie", prompt="the plot", completion_a="x", completion_b="y"),
        vote("base", "dpo", "a", prompt="the cast", completion_a="same .", completion_b="same ."),
        vote("base", "dpo", "a", prompt="the cast", completion_a="", completion_b="was fine ."),
        vote("base", "sft", "a", prompt="Human: hi\n\nAssistant:\n", completion_a="hello", completion_b="go away"),
    ]
    exported = export_preferences(votes, tmp_path / "out" / "prefs.jsonl")
    assert (exported.rows, exported.ties, exported.unusable) == (2, 1, 2)
    assert exported.message == (
        f"wrote 2 preference pairs to {tmp_path / 'out' / 'prefs.jsonl'} "
        "(1 ties and 2 with empty or identical completions left out)"
    )
    first, second = (json.loads(line) for line in (tmp_path / "out" / "prefs.jsonl").read_text().splitlines())
    assert first["prompt"] + first["chosen"] == "the soundtrack was great ."  # as the testbed joins them
    assert first["prompt"] + first["rejected"] == "the soundtrack seemed boring ."
    assert (first["chosen_method"], first["rejected_method"], first["prompt_index"]) == ("dpo", "base", 0)
    assert second["prompt"] + second["chosen"] == "Human: hi\n\nAssistant:\nhello"  # no space after a newline


def test_export_keeps_messages_as_messages_and_hf_preferences_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets
    from datasets import load_from_disk

    from plugins.tasks.hf_preferences import HFPreferences

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    votes = [
        vote("a", "b", "a", prompt=[{"role": "user", "content": f"review {i}"}], completion_a=f"yes {i}",
             completion_b=f"no {i}", prompt_index=i)
        for i in range(4)
    ]  # fmt: skip
    path = tmp_path / "prefs.jsonl"
    assert export_preferences(votes, path).rows == 4
    HFPreferences(path=str(path), judge_fraction=0, validation_fraction=0).build_datasets(tmp_path / "data")
    pairs = load_from_disk(str(tmp_path / "data"))["preferences"]
    assert len(pairs) == 3  # one of the four prompts is held out for evaluation
    row = pairs[0]
    assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["content"].startswith("yes")
    assert row["rejected"] == [{"role": "assistant", "content": row["chosen"][0]["content"].replace("yes", "no")}]


def test_export_refuses_what_hf_preferences_could_not_read(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"none of the 2 votes prefers one completion \(2 ties\)"):
        export_preferences([vote("a", "b", "tie")] * 2, tmp_path / "prefs.jsonl")
    with pytest.raises(HarnessError, match=r"prefs\.csv.*expected a \.jsonl or \.json file"):
        export_preferences([vote("a", "b", "a")], tmp_path / "prefs.csv")
    assert not list(tmp_path.iterdir())


# -- the report's human section -------------------------------------------------------------------------------------
def test_section_escapes_what_raters_and_methods_bring() -> None:
    hostile = "<script>alert(1)</script>"
    votes = [vote(hostile, "b|c", "a"), vote(hostile, "b|c", "b", rater="<img src=x>")]
    section = section_from_votes(votes, SimpleNamespace(groups=[]))
    assert "<script>" not in section.html and "&lt;script&gt;" in section.html
    assert "b\\|c" in section.markdown  # a pipe in a label does not break the markdown table
    assert {row[0] for row in section.tables["human"][1]} == {hostile, "b|c"}  # W&B tables hold the raw labels


class Recorder:
    """A logger plugin that keeps what `log_comparison` was handed (build_plugin instantiates it by import path)."""

    calls: ClassVar[list[dict[str, Any]]] = []

    def log_comparison(self, **fields: Any) -> None:
        Recorder.calls.append(fields)


@pytest.fixture(scope="module")
def voted_sweep(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A copy of the shared smoke sweep with votes in its arena database, written through the arena's store as the
    server writes them: rater ann on every prompt and pair, preferring the higher gold reward (a tie where the two
    completions are the same, A where only the gold is); bob on the first 16 prompts, the same but contrary on every
    fourth prompt."""
    from harness.arena.store import Presentation, Store, default_url

    sweep = shared_smoke_sweep(tmp_path_factory)
    folder = sweep.copy(tmp_path_factory.mktemp("voted"))
    samples = {
        method: [json.loads(line) for line in (job / "samples.jsonl").read_text().splitlines()]
        for method, job in sweep.jobs().items()
    }
    store = Store(default_url(folder))
    votes, contrary = [], []
    for rater, prompts in (("ann", range(32)), ("bob", range(16))):
        for i, (a, b) in itertools.product(prompts, itertools.combinations(sorted(samples), 2)):
            row_a, row_b = samples[a][i], samples[b][i]
            if row_a["completion"].strip() == row_b["completion"].strip():
                outcome = "tie"
            else:
                outcome = "b" if row_b["gold_reward"] > row_a["gold_reward"] else "a"
                if rater == "bob" and i % 4 == 0 and row_a["gold_reward"] != row_b["gold_reward"]:
                    outcome = {"a": "b", "b": "a"}[outcome]
                    contrary.append((i, a, b))
            shown = Presentation(uuid.uuid4().hex, rater, i, a, b, 0, 0, "a", time.time())
            store.add_presentation(shown)
            votes.append(store.record_vote(shown, rater, outcome, row_a["prompt"], row_a["completion"],
                                           row_b["completion"]))  # fmt: skip
    store.close()
    equal = sum(
        v.outcome != "tie" and samples[v.method_a][v.prompt_index]["gold_reward"]
        == samples[v.method_b][v.prompt_index]["gold_reward"]
        for v in votes
    )  # fmt: skip
    return SimpleNamespace(dir=folder, votes=votes, samples=samples, contrary=contrary, equal=equal, shared=sweep)


def test_no_votes_no_section(voted_sweep: SimpleNamespace) -> None:
    from harness.report.aggregate import load_sweep
    from harness.report.tables import compare

    untouched = voted_sweep.shared.dir
    assert human_section(compare(load_sweep(untouched))) is None
    assert not (untouched / "arena.sqlite").exists()  # reading votes creates no database


def test_human_section_in_markdown_html_and_wandb(voted_sweep: SimpleNamespace) -> None:
    from omegaconf import OmegaConf

    from harness.report import build_report
    from harness.report.publish import log_comparison

    votes = voted_sweep.votes
    report = build_report(voted_sweep.dir)
    (section,) = [s for s in report.sections if s.key == "human"]
    columns, rows = section.tables["human"]
    assert columns[:2] == ["method", "rating"]
    by_method = {row[0]: dict(zip(columns, row, strict=True)) for row in rows}
    assert set(by_method) == {"base", "sft", "dpo"}
    records = win_rates(votes)
    for method, record in records.items():
        row = by_method[method]
        assert (row["wins"], row["ties"], row["losses"], row["votes"]) == (
            record.wins, record.ties, record.losses, record.votes)  # fmt: skip
        assert row["win_rate"] == pytest.approx((record.wins + record.ties / 2) / record.votes)
        assert row["rating_low"] <= row["rating"] <= row["rating_high"]
        assert section.summary[f"human/{method}/rating"] == row["rating"]
        assert section.summary[f"human/{method}/win_rate"] == row["win_rate"]
        line = f"| {method} | {row['rating']:.0f} [{row['rating_low']:.0f}, {row['rating_high']:.0f}] | "
        assert line + f"{row['win_rate']:.2f} | {record.votes} |" in report.markdown
        assert f"<td>{method}</td><td>{row['rating']:.0f} [" in report.html.read_text()
    assert [row[0] for row in rows] == sorted(by_method, key=lambda m: -by_method[m]["rating"])
    # bob shares prompts 0-15 with ann: 48 items, alike except where he was contrary
    assert section.summary["human/rater_agreement"] == pytest.approx(1 - len(voted_sweep.contrary) / 48)
    scored = sum(v.outcome != "tie" for v in votes) - voted_sweep.equal
    assert section.summary["human/gold_agreement"] == pytest.approx(1 - len(voted_sweep.contrary) / scored)
    assert section.summary["human/votes"] == len(votes) and section.summary["human/raters"] == 2
    markdown = (voted_sweep.dir / "comparison.md").read_text()
    assert "## Human suite: blind side-by-side votes" in markdown
    assert f"{len(votes)} votes ({sum(v.outcome == 'tie' for v in votes)} ties) from 2 raters" in markdown
    assert f"of {scored} non-tie votes ({voted_sweep.equal} with equally scored samples left out)" in markdown
    assert "Krippendorff's alpha" in markdown and "on 48 items" in markdown
    assert section.summary["human/shared_items"] == 48 and "of 96 items voted on" in markdown
    assert '<h2 id="human">' in report.html.read_text()
    # identical outputs per method pair, from the samples (the arena never shows them; these votes were made by hand)
    samples = voted_sweep.samples
    for a, b in itertools.combinations(sorted(samples), 2):
        same = sum(same_text(x["completion"], y["completion"]) for x, y in zip(samples[a], samples[b], strict=True))
        assert f"{a} vs {b} {same} of {len(samples[a])} ({same / len(samples[a]):.0%})" in markdown
        assert section.summary[f"human/identical_outputs/{a} vs {b}"] == same / len(samples[a])

    Recorder.calls.clear()
    log_comparison(report, OmegaConf.create({"_target_": f"{__name__}.Recorder"}))
    (logged,) = Recorder.calls
    assert logged["tables"]["human"] == (columns, rows)
    assert {k: v for k, v in logged["summary"].items() if k.startswith("human/")} == section.summary


@pytest.mark.slow
def test_exported_votes_train_dpo(
    voted_sweep: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The RLHF loop closed: the votes on the smoke sweep's samples become the preferences a DPO run trains on, and
    its data are the texts the policies were given and wrote (the testbed's own join of prompt and completion)."""
    from datasets import load_from_disk

    from harness.arena.store import load_votes
    from plugins.tasks.testbed import join

    votes = load_votes(voted_sweep.dir)
    assert len(votes) == len(voted_sweep.votes)
    # as a user does it: `harness-arena SWEEP --export FILE`; the file is what export_preferences writes
    cli = subprocess.run(
        [str(HARNESS.parent / "harness-arena"), str(voted_sweep.dir), "--export", str(tmp_path / "prefs.jsonl")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-2000:]
    exported = export_preferences(votes, tmp_path / "direct.jsonl")
    assert cli.stdout.strip() == exported.message.replace(str(exported.path), str(tmp_path / "prefs.jsonl"))
    assert (tmp_path / "prefs.jsonl").read_text() == exported.path.read_text()
    exported = replace(exported, path=tmp_path / "prefs.jsonl")
    usable = [v for v in votes if v.outcome != "tie" and v.completion_a.strip() and v.completion_b.strip()]
    assert (exported.rows, exported.ties) == (len(usable), sum(v.outcome == "tie" for v in votes))
    assert exported.rows > 20  # (the smoke policies leave some completions empty: no text to prefer, left out)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    results = tmp_path / "results"
    done = run_harness(
        "algorithm=dpo", "task=hf_preferences", f"task.path={exported.path}", "debug=smoke", "logger=none",
        f"results_dir={results}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (result_file,) = results.glob("runs/*/result.json")
    result = json.loads(result_file.read_text())
    assert result["status"] == "complete"
    data, dpo = result["stages"]["data"]["metrics"], result["stages"]["dpo"]["metrics"]
    assert data["rows"] == exported.rows  # every exported pair read; some held out for evaluation and the judge
    assert dpo["pairs"] == data["size_preferences"] > 0
    assert data["size_preferences"] + data["size_judge_preferences"] < exported.rows
    assert dpo["params_changed"] > 0
    sampled = {join(v.prompt, completion) for v in votes for completion in (v.completion_a, v.completion_b)}
    pairs = load_from_disk(result["stages"]["data"]["path"])["preferences"]
    assert {row["prompt"] + row["chosen"] for row in pairs} <= sampled
    assert {row["prompt"] + row["rejected"] for row in pairs} <= sampled
