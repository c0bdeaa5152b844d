"""`eval=lm_eval`: lm-evaluation-harness in process on a tiny trained testbed model and on a random one.

The minimal-pair task must tell them apart (the "alignment tax" is only measurable if a fluent model scores well
above chance), a user's task YAML must run from its own folder with no code change, and an unknown task name must
be one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.protocols import EvalContext, Policy
from plugins.evals.lm_eval_suite import TASKS_DIR, LMEvalSuite, flatten_results, resolve_data_files


def context(path: Path) -> EvalContext:
    return EvalContext(
        prompts=[],
        completions=[],
        completion_tokens=[],
        policy=Policy(path=path, reference_path=None),
        gold=None,
        device="cpu",
        generation={},
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small base model pretrained on the testbed (~20 s) and a randomly initialised twin of it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from plugins.models.scratch import ScratchGPT2
    from plugins.tasks.testbed import Testbed

    root = tmp_path_factory.mktemp("lm_eval")
    data, trained, random_init = root / "data", root / "trained", root / "random"
    Testbed(num_pretrain=6000, num_pretrain_heldout=200, num_sft=8, num_prompts=8, num_eval_prompts=8).build_datasets(
        data
    )
    ScratchGPT2(n_layer=2, n_embd=64, n_head=2, train={"steps": 300}).build(trained, data)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(trained)).save_pretrained(random_init)
    AutoTokenizer.from_pretrained(trained).save_pretrained(random_init)
    return {"trained": trained, "random": random_init}


@pytest.fixture(scope="module")
def trained_scores(models: dict[str, Path]) -> dict[str, float]:
    return LMEvalSuite().evaluate(context(models["trained"]))


def test_minimal_pairs_separate_a_trained_model_from_a_random_one(
    models: dict[str, Path], trained_scores: dict[str, float]
) -> None:
    random_scores = LMEvalSuite(tasks=["testbed_minimal_pairs"]).evaluate(context(models["random"]))
    assert trained_scores["testbed_minimal_pairs/samples"] == 400  # the group: five edits, 80 pairs each
    assert trained_scores["testbed_minimal_pairs/acc"] > 0.8
    assert 0.35 < random_scores["testbed_minimal_pairs/acc"] < 0.65
    for edit in ("swap_adjacent", "verb_form", "misplaced_not", "noun_adjective", "double_but"):
        assert trained_scores[f"testbed_minimal_pairs_{edit}/samples"] == 80
        assert trained_scores[f"testbed_minimal_pairs_{edit}/acc"] > 0.7


def test_default_tasks_report_every_metric_under_its_task(trained_scores: dict[str, float]) -> None:
    assert 0.0 <= trained_scores["testbed_sentiment/acc"] <= 1.0
    assert trained_scores["testbed_sentiment/samples"] == 300
    # The grammar's own word perplexity on these reviews is 4.74 and a uniform guess over ~50 words is ~50.
    assert 4.7 < trained_scores["testbed_perplexity/word_perplexity"] < 15
    assert 0 < trained_scores["testbed_perplexity/bits_per_byte"] < 2


def test_a_users_task_yaml_runs_from_its_own_folder(models: dict[str, Path], tmp_path: Path) -> None:
    """A new task is a YAML and its data, in a folder of the user's: one override, no code; `data_files` is read
    beside the YAML whatever the working directory."""
    folder = tmp_path / "my_tasks"
    (folder / "data").mkdir(parents=True)
    rows = [{"good": "the movie was great .", "bad": "the the the the the ."}] * 6
    (folder / "data" / "fluency.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "my_fluency.yaml").write_text(
        "task: my_fluency\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n  data_files:\n    test: data/fluency.jsonl\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: ""\n'
        'doc_to_choice: "{{[good, bad]}}"\n'
        "doc_to_target: 0\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    suite = LMEvalSuite(tasks=["my_fluency", "testbed_perplexity"], include_path=str(folder), limit=5)
    metrics = suite.evaluate(context(models["trained"]))
    assert metrics["my_fluency/acc"] == 1.0  # the fluent sentence wins every pair
    assert metrics["my_fluency/samples"] == 5  # limit applies to the user's task too
    assert metrics["testbed_perplexity/samples"] == 5  # and ours are still found beside it


def test_an_unknown_task_is_one_line_naming_it() -> None:
    with pytest.raises(HarnessError) as error:
        LMEvalSuite(tasks=["testbed_minimal_pairs", "no_such_task"])  # checked when built: before any training
    message = str(error.value)
    assert "\n" not in message
    assert "'no_such_task'" in message and "testbed_minimal_pairs" in message


def test_a_missing_include_path_or_data_file_is_one_line(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"include_path=.*not a folder"):
        LMEvalSuite(include_path=str(tmp_path / "nowhere")).evaluate(context(models["trained"]))
    (tmp_path / "broken.yaml").write_text(
        "task: broken\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: absent.jsonl\n"
        "test_split: test\noutput_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: text\n"
    )
    with pytest.raises(HarnessError, match=r"cannot load a task's data") as error:
        LMEvalSuite(tasks=["broken"], include_path=str(tmp_path)).evaluate(context(models["trained"]))
    assert "\n" not in str(error.value)


def test_flatten_results_names_metrics_by_task() -> None:
    results = {
        "results": {
            "testbed_minimal_pairs_verb_form": {"alias": "verb_form", "acc,none": 0.9, "acc_stderr,none": 0.01},
            "testbed_perplexity": {"sample_len": 7, "word_perplexity,none": 5.1, "word_perplexity_stderr,none": "N/A"},
            "gsm8k": {"exact_match,strict-match": 0.25, "exact_match,flexible-extract": 0.5},
        },
        "groups": {"testbed_minimal_pairs": {"alias": "testbed_minimal_pairs", "sample_len": 100, "acc,none": 0.7}},
        "n-samples": {"testbed_minimal_pairs_verb_form": {"original": 80, "effective": 20}},
    }
    assert flatten_results(results) == {
        "testbed_minimal_pairs_verb_form/acc": 0.9,
        "testbed_minimal_pairs_verb_form/acc_stderr": 0.01,
        "testbed_minimal_pairs_verb_form/samples": 20.0,  # from n-samples when the task has no sample_len
        "testbed_perplexity/word_perplexity": 5.1,  # the "N/A" stderr is left out
        "testbed_perplexity/samples": 7.0,
        "gsm8k/exact_match/strict-match": 0.25,
        "gsm8k/exact_match/flexible-extract": 0.5,
        "testbed_minimal_pairs/acc": 0.7,  # a group's aggregate
        "testbed_minimal_pairs/samples": 100.0,
    }


def test_relative_data_files_resolve_beside_the_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside = str(TASKS_DIR / "data" / "testbed_sentiment.jsonl")
    assert resolve_data_files({"test": "data/testbed_sentiment.jsonl"}, TASKS_DIR) == {"test": beside}
    assert resolve_data_files(["data/testbed_sentiment.jsonl"], TASKS_DIR) == [beside]
    assert resolve_data_files("data/testbed_*.jsonl", TASKS_DIR) == str(TASKS_DIR / "data" / "testbed_*.jsonl")
    assert resolve_data_files("data/absent.jsonl", TASKS_DIR) == str(TASKS_DIR / "data" / "absent.jsonl")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "only_here.jsonl").write_text("{}\n")
    assert resolve_data_files("only_here.jsonl", TASKS_DIR) == "only_here.jsonl"  # plain lm-eval's reading
    assert resolve_data_files("/abs/x.jsonl", TASKS_DIR) == "/abs/x.jsonl"
    assert resolve_data_files("hf://datasets/x/y.jsonl", TASKS_DIR) == "hf://datasets/x/y.jsonl"


def test_config_composes_beside_gold_and_smoke_limits_it(compose) -> None:
    from harness.app import apply_smoke
    from harness.runner import build_plugin

    cfg = compose(["eval=[gold,lm_eval]"])
    apply_smoke(cfg)  # without debug=smoke the plugins' `smoke:` blocks are dropped
    assert sorted(cfg.eval) == ["gold", "lm_eval"]
    suite = build_plugin(cfg.eval.lm_eval)
    assert suite.name == "lm_eval" and suite.limit is None
    assert suite.tasks == ["testbed_minimal_pairs", "testbed_sentiment", "testbed_perplexity"]
    smoke = compose(["eval=[lm_eval]", "debug=smoke", "eval.lm_eval.include_path=my_tasks"])
    apply_smoke(smoke)
    assert smoke.eval.lm_eval.limit == 20 and smoke.eval.lm_eval.include_path == "my_tasks"
