"""Values of the right type that cannot be right are refused before any work, in one line naming the value and
the allowed range (harness/ranges.py); every shipped configuration passes the same check."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import run_harness
from omegaconf import OmegaConf
from test_bad_input import assert_one_line_error

from harness.app import CONFIG_DIR, apply_smoke
from harness.errors import HarnessError
from harness.ranges import allowed, check_config, check_value, parse
from harness.schema import mirror_dataclass


def refusal(compose, overrides: list[str]) -> str:
    """The one-line error `check_config` gives the composed config (as a job would see it after debug=smoke)."""
    cfg = compose(overrides)
    apply_smoke(cfg, overrides)
    with pytest.raises(HarnessError) as caught:
        check_config(cfg)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- the interval notation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "inside", "outside", "said"),
    [
        ("(0, inf)", [1e-9, 5], [0, -1, float("nan")], "> 0"),
        ("[0, inf)", [0, 3], [-1e-9], ">= 0"),
        ("[0, 1]", [0, 0.5, 1], [-0.1, 1.01], "in [0, 1]"),
        ("(0, 1]", [1, 0.3], [0, 2], "in (0, 1]"),
        ("[1, inf)", [1, 10**9], [0], ">= 1"),
        ("(-inf, 0]", [-5, 0], [1e-3], "<= 0"),
    ],
)
def test_a_range_holds_what_it_says(spec: str, inside: list, outside: list, said: str) -> None:
    bounds = parse(spec, "here")
    assert all(value in bounds for value in inside)
    assert not any(value in bounds for value in outside)
    assert bounds.describe() == said


@pytest.mark.parametrize("spec", ["0..1", "[1, 0]", "[a, 1]", "(0, 1"])
def test_a_malformed_range_names_where_it_was_declared(spec: str) -> None:
    with pytest.raises(HarnessError, match=r"^task\.ranges\.x: range .*(expected|bound)"):
        parse(spec, "task.ranges.x")


def test_null_is_off_and_lists_are_checked_item_by_item() -> None:
    check_value("algorithm.trainer.beta", None, "(0, inf)")
    check_value("algorithm.trainer.beta", [0.1, 0.3], "(0, inf)")
    expected = r"^algorithm\.trainer\.beta\[1\]=-0\.3: out of range; expected a value > 0$"
    with pytest.raises(HarnessError, match=expected):
        check_value("algorithm.trainer.beta", [0.1, -0.3], "(0, inf)")


# -- every kind the issue names, through composition ----------------------------------------------------------
REFUSED = [
    # KL strengths: negative or zero where zero means nothing (DPO's beta); the shared knob
    (["algorithm=dpo", "algorithm.trainer.beta=-1"], r"algorithm\.trainer\.beta=-1\.0: out of range; expected .* > 0"),
    (["algorithm=dpo", "algorithm.trainer.beta=0"], r"algorithm\.trainer\.beta=0\.0: .*> 0"),
    (["algorithm=dpo", "kl_beta=0"], r"kl_beta=0\.0: out of range; expected a value > 0"),
    (["algorithm=ppo", "algorithm.trainer.kl_coef=-0.1"], r"algorithm\.trainer\.kl_coef=-0\.1: .*>= 0"),
    (["algorithm=grpo", "algorithm.trainer.beta=-0.5"], r"algorithm\.trainer\.beta=-0\.5: .*>= 0"),
    (["algorithm=online_dpo", "algorithm.trainer.beta=[-0.1]"], r"algorithm\.trainer\.beta\[0\]=-0\.1: .*> 0"),
    # learning rates, wherever they are set
    (["algorithm=sft", "sft.trainer.learning_rate=0"], r"sft\.trainer\.learning_rate=0\.0: .*> 0"),
    (["algorithm=ppo", "algorithm.trainer.learning_rate=-3e-4"], r"algorithm\.trainer\.learning_rate=-0\.0003: .*> 0"),
    (["model.train.learning_rate=0"], r"model\.train\.learning_rate=0: .*> 0"),  # an untyped YAML value stays int
    (["reward=learned", "reward.trainer.learning_rate=-1"], r"reward\.trainer\.learning_rate=-1\.0: .*> 0"),
    # probabilities
    (["generation.top_p=1.5"], r"generation\.top_p=1\.5: out of range; expected a value in \(0, 1\]"),
    (["+task.grammar.p_not=-0.1"], r"task\.grammar\.p_not=-0\.1: .*in \[0, 1\]"),
    (["peft=lora", "peft.lora_dropout=1.0"], r"peft\.lora_dropout=1\.0: .*in \[0, 1\)"),
    (["task=ultrafeedback", "task.judge_fraction=1.5"], r"task\.judge_fraction=1\.5: .*in \[0, 1\)"),
    (["algorithm=dpo", "algorithm.trainer.label_smoothing=0.7"], r"algorithm\.trainer\.label_smoothing=0\.7: .*0\.5\]"),
    # batch sizes that do not divide as the method needs
    (
        ["algorithm=grpo", "algorithm.trainer.per_device_train_batch_size=6"],
        r"algorithm\.trainer: GRPOConfig rejected the settings: generation_batch_size \(6\) must be divisible by "
        r"num_generations \(4\)\.",
    ),
    (
        ["algorithm=ppo", "algorithm.trainer.num_minibatches=3"],
        r"algorithm\.trainer\.num_minibatches=3: must divide batch_size=32",
    ),
    (["algorithm=grpo", "algorithm.trainer.num_generations=1"], r"algorithm\.trainer\.num_generations=1: .*>= 2"),
    # budgets and counts
    (["kl_budget=-1"], r"kl_budget=-1\.0: out of range; expected a value >= 0"),
    (["generation.num_prompts=0"], r"generation\.num_prompts=0: .*>= 1"),
    (["algorithm=best_of_n", "algorithm.n=0"], r"algorithm\.n=0: .*>= 1"),
]


@pytest.mark.parametrize(("overrides", "expected"), REFUSED, ids=[" ".join(o) for o, _ in REFUSED])
def test_each_impossible_value_is_one_line(compose, overrides: list[str], expected: str) -> None:
    assert re.fullmatch(expected, refusal(compose, [*overrides, "debug=smoke"]))


def test_the_shared_knob_is_named_before_the_trainer_setting_it_flows_into(compose) -> None:
    assert refusal(compose, ["algorithm=dpo", "kl_beta=-2"]).startswith("kl_beta=-2.0:")


def test_every_shipped_configuration_passes(compose) -> None:
    """No false refusal: each algorithm, with the full and the smoke budgets, a chat model with LoRA and every
    suite, and a Hub-format task."""
    algorithms = sorted(path.stem for path in (Path(CONFIG_DIR) / "algorithm").glob("*.yaml"))
    every_suite = "eval=[gold,kl,judge,win_rate,diversity,lm_eval]"
    extras = [
        [],  # the full budgets
        ["model=tiny_chat", "peft=lora", "reward=learned", every_suite, "debug=smoke"],
    ]
    for algorithm in algorithms:
        for extra in [*extras, ["task=ultrafeedback", "reward=gold"]] if algorithm == "dpo" else extras:
            overrides = [f"algorithm={algorithm}", *extra]
            cfg = compose(overrides)
            apply_smoke(cfg, overrides)
            check_config(cfg)  # raises on a false refusal, naming the setting


def test_declared_ranges_do_not_reach_the_plugin_or_a_stage_key(compose) -> None:
    """`ranges:` is a declaration, like `headline:`: the task is built without it and its data stage key is what
    it was before ranges were declared."""
    from harness.runner import build_plugin, settings_of

    cfg = compose(["debug=smoke"])
    apply_smoke(cfg, ["debug=smoke"])
    assert "ranges" in cfg.task
    assert "ranges" not in settings_of(cfg.task)
    everything = OmegaConf.to_container(cfg.task, resolve=True)
    assert settings_of(cfg.task) == {key: value for key, value in everything.items() if key != "ranges"}
    build_plugin(cfg.task)  # the constructor would reject an unknown `ranges` argument


def test_a_plugin_dataclass_declares_its_ranges_in_its_fields() -> None:
    """A plugin's own config class: `allowed(...)` in the field; the mirror the YAML composes against carries it,
    and the class's `__post_init__` runs on the composed values (harness.ranges builds it once)."""

    @dataclass
    class Settings:
        rate: float = field(default=0.1, metadata=allowed("(0, 1)"))
        size: int = 4

        def __post_init__(self) -> None:
            if self.size % 2:
                raise ValueError(f"size={self.size}: expected an even number")

    mirrored = mirror_dataclass(Settings)
    cfg = OmegaConf.create({"algorithm": {"trainer": OmegaConf.structured(mirrored)}})
    check_config(cfg)
    cfg.algorithm.trainer.rate = 1.0
    expected = r"^algorithm\.trainer\.rate=1\.0: out of range; expected a value in \(0, 1\)$"
    with pytest.raises(HarnessError, match=expected):
        check_config(cfg)
    cfg.algorithm.trainer.rate = 0.5
    cfg.algorithm.trainer.size = 3
    with pytest.raises(HarnessError, match=r"^algorithm\.trainer\.size=3: expected an even number$"):
        check_config(cfg)


# -- end to end: nothing trains -------------------------------------------------------------------------------
def test_the_cli_refuses_beta_minus_one_before_any_stage(tmp_path: Path) -> None:
    results = tmp_path / "results"
    result = run_harness(
        "algorithm=dpo", "algorithm.trainer.beta=-1", "debug=smoke", "logger=none", f"results_dir={results}"
    )
    assert_one_line_error(result, r"error: algorithm\.trainer\.beta=-1\.0: out of range; expected a value > 0")
    assert not any((results / "cache").glob("*/*/COMPLETE")), "a stage was built before the refusal"


def test_more_eval_prompts_than_the_task_has_is_refused_before_training(tmp_path: Path) -> None:
    """The evaluation set's size is known once the (cheap) data stage exists: the check sits before the base model."""
    results = tmp_path / "results"
    result = run_harness(
        "algorithm=sft", "generation.num_prompts=100000", "debug=smoke", "logger=none", f"results_dir={results}"
    )
    assert_one_line_error(
        result,
        r"error: generation\.num_prompts=100000: more than the 32 evaluation prompts of task 'testbed'; expected at "
        r"most 32 \(or null: all of them\)",
    )
    built = sorted(path.parent.parent.name for path in (results / "cache").glob("*/*/COMPLETE"))
    assert built == ["data"], built
