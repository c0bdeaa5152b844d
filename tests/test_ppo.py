"""PPO end to end on a small testbed budget: it learns (score up, gold reward above SFT), logs what it should, and
starts from the very SFT stage `algorithm=sft` trains. Plus the config checks, which need no training.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import results_by_algorithm, run_harness

from harness.errors import HarnessError
from plugins.algorithms.ppo import PPO, PPOConfig, check_reference, load_config, stage_trainer

# The budget of tests/test_pipeline.py, a little smaller: SFT only has to be a fair starting point here.
BUDGET = [
    "task.num_pretrain=8000",
    "task.num_pretrain_heldout=500",
    "task.num_sft=800",
    "task.num_eval_prompts=256",
    "model.n_layer=2",
    "model.n_embd=64",
    "model.n_head=2",
    "model.train.steps=300",
]

LOGGED = {
    "objective/kl",
    "objective/entropy",
    "objective/score",
    "objective/rlhf_reward",
    "policy/approx_kl",
    "policy/clipfrac",
    "losses/pg_loss",
    "losses/v_loss",
    "val/explained_variance",
    "val/clipfrac",
    "kl_coef",
    "lr",
    "episodes",
    "eps",
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict[str, dict]:
    """SFT and PPO (default trainer settings, small model) in one sweep, as a user would compare them."""
    root = tmp_path_factory.mktemp("results")
    result = run_harness(
        "-m", "algorithm=sft,ppo", "reward=gold", "seed=0", "logger=none", f"results_dir={root}", *BUDGET
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return results_by_algorithm(root / "sweeps")


@pytest.mark.slow
def test_ppo_starts_from_the_sft_stage_of_algorithm_sft(sweep) -> None:
    ppo, sft = sweep["ppo"], sweep["sft"]
    assert ppo["status"] == "complete" and ppo["error"] is None
    assert ppo["stages"]["sft"]["key"] == sft["stages"]["sft"]["key"]
    assert ppo["cost"]["built_now"] == {"data": False, "base_model": False, "sft": False, "ppo": True}
    assert ppo["cost"]["tokens_trained"]["ppo"] == ppo["metrics"]["train/tokens_trained"] > 0


@pytest.mark.slow
def test_ppo_learns_its_reward(sweep) -> None:
    metrics = sweep["ppo"]["metrics"]
    stage = Path(sweep["ppo"]["stages"]["ppo"]["path"])
    history = [json.loads(line) for line in (stage / "log_history.jsonl").read_text().splitlines()]
    assert len(history) == metrics["train/updates"] == PPOConfig().total_episodes // PPOConfig().batch_size
    assert all(set(row) >= LOGGED for row in history)
    # the score climbs from the first updates to the last, and the policy pays for it in KL
    first = sum(row["objective/score"] for row in history[:5]) / 5
    last = sum(row["objective/score"] for row in history[-5:]) / 5
    assert last > first + 0.1
    assert metrics["train/score"] > metrics["train/first_score"] + 0.1
    assert 0 < metrics["train/kl"] < 20
    assert metrics["train/params_changed"] == 1.0
    assert metrics["train/episodes"] == PPOConfig().total_episodes and metrics["train/episodes_per_second"] > 0
    # the learning rate decays linearly to 0 (Huang et al. 2024)
    assert history[0]["lr"] == pytest.approx(PPOConfig().learning_rate)
    assert history[-1]["lr"] == pytest.approx(PPOConfig().learning_rate / len(history))
    assert all(math.isfinite(row["losses/pg_loss"]) and math.isfinite(row["losses/v_loss"]) for row in history)


@pytest.mark.slow
def test_ppo_beats_sft_on_the_gold_reward_and_keeps_the_grammar(sweep) -> None:
    ppo, sft = sweep["ppo"]["metrics"], sweep["sft"]["metrics"]
    margin = 3 * math.hypot(ppo["eval/gold/reward_stderr"], sft["eval/gold/reward_stderr"])
    assert ppo["eval/gold/reward"] > sft["eval/gold/reward"] + max(margin, 0.08)
    assert ppo["eval/gold/grammatical"] > sft["eval/gold/grammatical"] - 0.1


@pytest.mark.slow
def test_the_saved_policy_is_a_standard_checkpoint(sweep) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stage = Path(sweep["ppo"]["stages"]["ppo"]["path"])
    assert (stage / "model.safetensors").exists()
    AutoModelForCausalLM.from_pretrained(stage)
    assert AutoTokenizer.from_pretrained(stage).eos_token == "<eos>"


@pytest.mark.slow
def test_smoke_run_completes(tmp_path) -> None:
    result = run_harness("debug=smoke", "algorithm=ppo", "reward=gold", f"results_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    (found,) = results_by_algorithm(tmp_path / "runs").values()
    assert found["status"] == "complete"
    assert found["metrics"]["train/episodes"] == 96 and found["metrics"]["train/updates"] == 3


@pytest.mark.slow
def test_a_bad_setting_is_one_line_from_the_cli(tmp_path) -> None:
    """PPO's settings are checked while composing, like a TRL trainer's: Hydra names the key and the schema."""
    result = run_harness("algorithm=ppo", "algorithm.trainer.batch_size=big", "logger=none", f"results_dir={tmp_path}")
    assert result.returncode == 1
    assert "Value 'big' of type 'str' could not be converted to Integer" in result.stderr
    assert "full_key: algorithm.trainer.batch_size" in result.stderr and "PPOConfigFields" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("result.json"))  # refused before any job started


# --- config: no training ---------------------------------------------------------------------------------


def test_yaml_defaults_are_the_dataclass_defaults(compose) -> None:
    trainer = dict(compose(["algorithm=ppo"]).algorithm.trainer)
    assert load_config(trainer) == PPOConfig()


def test_reinforce_pp_is_ppo_without_a_critic(compose) -> None:
    """conf/algorithm/reinforce_pp.yaml: PPO's settings but the advantage estimator (and what it tunes)."""
    algorithm = compose(["algorithm=reinforce_pp"]).algorithm
    assert algorithm._target_ == "plugins.algorithms.ppo.PPO" and algorithm.name == "reinforce_pp"
    ppo = load_config(dict(compose(["algorithm=ppo"]).algorithm.trainer))
    assert load_config(dict(algorithm.trainer)) == dataclasses.replace(ppo, advantage_estimator="reinforce++")


def test_hydra_builds_the_sft_algorithm_ppo_starts_from(compose) -> None:
    from harness.app import apply_smoke
    from harness.runner import build_plugin
    from plugins.algorithms.trl_method import TRLMethod

    cfg = compose(["algorithm=ppo"])
    # the run's one SFT node, as `algorithm=sft` evaluates it: hence the same cached stage
    assert cfg.algorithm.init == compose(["algorithm=sft"]).algorithm.init == cfg.sft
    apply_smoke(cfg)  # as the CLI does: drops the `smoke:` blocks
    ppo = build_plugin(cfg.algorithm)
    assert isinstance(ppo, PPO) and isinstance(ppo.init, TRLMethod) and ppo.name == "ppo"
    assert ppo.init.name == "sft"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lerning_rate": 1e-4}, "algorithm.trainer.lerning_rate: unknown PPO setting"),
        ({"batch_size": "big"}, "algorithm.trainer.batch_size='big': expected an integer"),
        ({"batch_size": 6.5}, "algorithm.trainer.batch_size=6.5: expected an integer"),
        ({"learning_rate": "fast"}, "algorithm.trainer.learning_rate='fast': expected a number"),
        ({"adaptive_kl": 1}, "algorithm.trainer.adaptive_kl=1: expected true or false"),
        ({"kl_coef": True}, "algorithm.trainer.kl_coef=True: expected a number"),
        ({"kl_estimator": "k2"}, "algorithm.trainer.kl_estimator='k2': expected one of k1, k3"),
        ({"num_minibatches": 3}, "algorithm.trainer.num_minibatches=3: must divide batch_size=64"),
        ({"ppo_epochs": 0}, "algorithm.trainer.ppo_epochs=0: out of range; expected a value >= 1"),
        ({"kl_coef": -0.1}, "algorithm.trainer.kl_coef=-0.1: out of range; expected a value >= 0"),
        ({"total_episodes": 10}, "algorithm.trainer.total_episodes=10: less than one batch"),
        ({"advantage_estimator": "vtrace"}, "algorithm.trainer.advantage_estimator='vtrace': expected one of gae, "),
        (
            {"advantage_estimator": "reinforce++", "gamma": 0.99},
            "algorithm.trainer.gamma=0.99: REINFORCE++ sums undiscounted rewards to go",
        ),
        ({"ref_ema": 1.0}, "algorithm.trainer.ref_ema=1.0: out of range; expected a value in [0, 1)"),
        ({"normalize_advantages": 0}, "algorithm.trainer.normalize_advantages=0: expected true or false"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(fields: dict, message: str) -> None:
    with pytest.raises(HarnessError) as error:
        load_config(fields)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_settings_are_checked_when_training_starts_not_when_hydra_builds() -> None:
    ppo = PPO(trainer={"lerning_rate": 1e-4})  # Hydra would wrap an error raised here
    with pytest.raises(HarnessError, match="lerning_rate"):
        ppo.train(run=None)  # checked before the run is touched


def test_settings_added_later_stay_out_of_the_stage_key_at_their_defaults() -> None:
    """ref_ema and normalize_advantages came after PPO stages (and the README's numbers) were cached: at the values
    that do what PPO did before them, the stage key is the one it always was; any other value is part of it."""
    before = {
        "total_episodes", "batch_size", "num_minibatches", "ppo_epochs", "learning_rate", "adam_eps",
        "weight_decay", "max_grad_norm", "response_length", "temperature", "missing_eos_penalty", "kl_coef",
        "kl_estimator", "adaptive_kl", "target_kl", "kl_horizon", "whiten_rewards", "advantage_estimator", "gamma",
        "gae_lambda", "clip_coef", "cliprange_value", "vf_coef", "cpu_threads",
    }  # fmt: skip
    assert set(stage_trainer(PPOConfig())) == before
    assert stage_trainer(PPOConfig()) == {k: v for k, v in dataclasses.asdict(PPOConfig()).items() if k in before}
    ablated = stage_trainer(PPOConfig(ref_ema=0.0, normalize_advantages=False))
    assert ablated["ref_ema"] == 0.0 and ablated["normalize_advantages"] is False
    assert set(ablated) == before | {"ref_ema", "normalize_advantages"}


def test_an_ema_reference_with_lora_is_one_line() -> None:
    """With peft=lora the reference is the policy's own frozen base: nothing of its own to move."""
    check_reference(PPOConfig(ref_ema=0.99), None)
    check_reference(PPOConfig(), object())
    with pytest.raises(HarnessError) as error:
        check_reference(PPOConfig(ref_ema=0.99), object())
    assert str(error.value).startswith("algorithm.trainer.ref_ema=0.99: an EMA reference needs its own copy")
    assert "\n" not in str(error.value)


def test_a_batch_larger_than_the_prompts_is_one_line_not_a_hang() -> None:
    """Batches come from seeded shuffles of the prompts, the incomplete last one dropped: 5 prompts in batches of 2
    give 2 per pass, every prompt at most once per pass. 6 in batches of 8 would never give one (a debug=smoke task
    has 64 RL prompts; experiment=xu's large batch is 256): refused when training starts."""
    from plugins.algorithms.ppo import prompt_batches

    batches = prompt_batches(list("abcde"), 2, seed=0)
    first_pass = [*next(batches), *next(batches)]
    assert len(first_pass) == len(set(first_pass)) == 4
    with pytest.raises(HarnessError) as error:
        prompt_batches(list("abcdef"), 8, seed=0)
    assert str(error.value) == "algorithm.trainer.batch_size=8: more than the task's 6 RL prompts; expected at most 6"


def test_valid_settings_are_converted() -> None:
    config = load_config({"learning_rate": 1, "missing_eos_penalty": None, "kl_estimator": "k3"})
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.missing_eos_penalty is None and config.kl_estimator == "k3"


# --- REINFORCE++ (Hu 2025): the same loop without a critic --------------------------------------------------

# debug=smoke stages (seconds), with a policy step large enough to move the smoke-sized model in 48 updates
REINFORCE_PP = [
    "algorithm.trainer.total_episodes=1536",
    "algorithm.trainer.learning_rate=1e-3",
    "algorithm.trainer.ppo_epochs=4",
]
CRITIC_LOGGED = {"losses/v_loss", "val/explained_variance", "val/clipfrac"}


@pytest.fixture(scope="module")
def reinforce_pp_sweep(tmp_path_factory) -> dict[str, dict]:
    """SFT and REINFORCE++ on the gold reward, smoke-sized (~30 s): two jobs, the second reuses the first's SFT."""
    root = tmp_path_factory.mktemp("reinforce_pp")
    common = ("debug=smoke", "reward=gold", "eval=[gold]", "cpu_threads=1", f"results_dir={root}")
    for job in (["algorithm=sft"], ["algorithm=reinforce_pp", *REINFORCE_PP]):
        result = run_harness(*job, *common)
        assert result.returncode == 0, result.stderr[-3000:]
    return results_by_algorithm(root / "runs")


@pytest.mark.slow
def test_reinforce_pp_learns_without_a_critic(reinforce_pp_sweep) -> None:
    rpp, sft = reinforce_pp_sweep["reinforce_pp"], reinforce_pp_sweep["sft"]
    assert rpp["status"] == "complete" and rpp["stages"]["sft"]["key"] == sft["stages"]["sft"]["key"]
    stage = Path(rpp["stages"]["reinforce_pp"]["path"])
    history = [json.loads(line) for line in (stage / "log_history.jsonl").read_text().splitlines()]
    assert len(history) == 1536 // 32  # smoke batches of 32
    # the policy's metrics are logged, the critic's are not: there is none
    assert all(set(row) >= LOGGED - CRITIC_LOGGED and not set(row) & CRITIC_LOGGED for row in history)
    first = sum(row["objective/score"] for row in history[:8]) / 8
    last = sum(row["objective/score"] for row in history[-8:]) / 8
    assert last > first + 0.05
    assert rpp["metrics"]["eval/gold/reward"] > sft["metrics"]["eval/gold/reward"] + 0.1
    assert rpp["metrics"]["train/params_changed"] == 1.0


@pytest.mark.slow
def test_reinforce_pp_checkpoints_hold_no_value_model_and_resume_exactly(reinforce_pp_sweep, tmp_path) -> None:
    """train_ppo itself on the sweep's SFT stage: 2 updates, a checkpoint after the first. It holds the policy
    alone, and the optimizer steps exactly the policy's parameters; a second call resumes from it (no value
    model to restore) and ends on the very weights of the uninterrupted run."""
    from datasets import load_from_disk
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from harness.api import TrainingStage
    from harness.protocols import Reward
    from harness.training import MetricsRecorder
    from plugins.algorithms.ppo import train_ppo

    stages = reinforce_pp_sweep["reinforce_pp"]["stages"]
    sft_path = Path(stages["sft"]["path"])
    prompts = list(load_from_disk(stages["data"]["path"])["prompts"]["prompt"])
    words = Reward("words", lambda _, completions: [min(len(c.split()), 8) / 8 for c in completions], is_gold=True)
    config = load_config({"advantage_estimator": "reinforce++", "total_episodes": 32, "batch_size": 16,
                          "save_every": 1})  # fmt: skip

    class Silent:
        def log(self, *_: object, **__: object) -> None: ...

    def train(out_dir: Path) -> dict:
        recorder = MetricsRecorder(Silent(), "train", out_dir / "log_history.jsonl")
        return train_ppo(config, TrainingStage.outside_a_run(out_dir, sft_path), reward=words, prompts=prompts,
                         recorder=recorder, device="cpu", seed=0)  # fmt: skip

    out_dir = tmp_path / "rpp"
    train(out_dir)
    uninterrupted = load_file(out_dir / "model.safetensors")
    state_dir = out_dir / "checkpoints" / "ppo-rank0"
    assert sorted(p.name for p in state_dir.iterdir()) == ["policy.safetensors", "state.pt"]
    state = torch.load(state_dir / "state.pt", weights_only=True)
    policy = AutoModelForCausalLM.from_pretrained(sft_path)
    assert state["update"] == 1
    assert len(state["optimizer"]["param_groups"][0]["params"]) == len(list(policy.parameters()))
    assert len(state["optimizer"]["state"]) == len(list(policy.parameters()))

    metrics = train(out_dir)  # finds the checkpoint of update 1: redoes update 2 only
    assert metrics["resumed_from_step"] == 1
    resumed = load_file(out_dir / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)


# --- the EMA reference (Xu et al. 2024): training's reference moves, the evaluation's stays SFT ----------------


@pytest.fixture(scope="module")
def ema_run(reinforce_pp_sweep) -> dict:
    """PPO with ref_ema 0 (the reference becomes the policy after every update) on the smoke SFT stage above."""
    root = reinforce_pp_sweep["sft"]["dir"].parents[1]
    result = run_harness(
        "debug=smoke", "reward=gold", "eval=[gold,kl]", "cpu_threads=1", f"results_dir={root}",
        "algorithm=ppo", "algorithm.trainer.ref_ema=0.0", *REINFORCE_PP,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return results_by_algorithm(root / "runs")["ppo"]


@pytest.mark.slow
def test_an_ema_reference_is_trained_against_and_sft_is_evaluated_against(ema_run) -> None:
    """ref_ema 0: each rollout's reference is the very policy that sampled it, so the training KL is 0 at every
    update (no penalty holds the policy back). The evaluation still measures KL to SFT, as for every method: the
    policy has moved from there. The setting is in the stage's key, so no cached PPO stage of another is reused."""
    assert ema_run["status"] == "complete"
    stage = Path(ema_run["stages"]["ppo"]["path"])
    assert json.loads((stage / "stage.json").read_text())["config"]["trainer"]["ref_ema"] == 0.0
    history = [json.loads(line) for line in (stage / "log_history.jsonl").read_text().splitlines()]
    assert len(history) == 1536 // 32 and all(abs(row["objective/kl"]) < 1e-4 for row in history)
    assert ema_run["metrics"]["eval/kl/seq_kl"] > 0.1
    assert ema_run["metrics"]["train/params_changed"] == 1.0


@pytest.mark.slow
def test_the_ema_reference_is_checkpointed_and_resumes_exactly(reinforce_pp_sweep, tmp_path, monkeypatch) -> None:
    """train_ppo with ref_ema 0.5: 2 updates, a checkpoint after the first. Its reference is 0.5 SFT + 0.5 the
    policy of update 1, weight by weight; resuming from it ends on the very weights of the uninterrupted run (a
    reference restarted from SFT would not). ref_ema None: the reference is never updated and not checkpointed."""
    from datasets import load_from_disk
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from harness.api import TrainingStage
    from harness.protocols import Reward
    from harness.training import MetricsRecorder
    from plugins.algorithms.ppo import loop as ppo  # the loop's own name for update_reference, patched below

    stages = reinforce_pp_sweep["reinforce_pp"]["stages"]
    sft_path = Path(stages["sft"]["path"])
    prompts = list(load_from_disk(stages["data"]["path"])["prompts"]["prompt"])
    words = Reward("words", lambda _, completions: [min(len(c.split()), 8) / 8 for c in completions], is_gold=True)

    class Silent:
        def log(self, *_: object, **__: object) -> None: ...

    def train(out_dir: Path, **fields: object) -> dict:
        config = load_config({"total_episodes": 32, "batch_size": 16, "save_every": 1, **fields})
        recorder = MetricsRecorder(Silent(), "train", out_dir / "log_history.jsonl")
        return ppo.train_ppo(config, TrainingStage.outside_a_run(out_dir, sft_path), reward=words, prompts=prompts,
                             recorder=recorder, device="cpu", seed=0)  # fmt: skip

    out_dir = tmp_path / "ema"
    train(out_dir, ref_ema=0.5)
    uninterrupted = load_file(out_dir / "model.safetensors")
    state_dir = out_dir / "checkpoints" / "ppo-rank0"
    files = ["policy.safetensors", "reference.safetensors", "state.pt", "value.safetensors"]
    assert sorted(p.name for p in state_dir.iterdir()) == files
    policy, reference = load_file(state_dir / "policy.safetensors"), load_file(state_dir / "reference.safetensors")
    sft = AutoModelForCausalLM.from_pretrained(sft_path).state_dict()  # by every name (tied weights: both)
    assert reference.keys() == policy.keys() and reference.keys() <= sft.keys()
    for key in reference:
        torch.testing.assert_close(reference[key], 0.5 * sft[key] + 0.5 * policy[key], rtol=0, atol=1e-6)
    assert any(not torch.equal(reference[key], sft[key]) for key in reference)  # it moved

    assert train(out_dir, ref_ema=0.5)["resumed_from_step"] == 1
    resumed = load_file(out_dir / "model.safetensors")
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in uninterrupted)

    def refuse(*_: object) -> None:
        raise AssertionError("the reference moved without ref_ema")

    monkeypatch.setattr(ppo, "update_reference", refuse)
    train(tmp_path / "fixed")
    assert "reference.safetensors" not in {p.name for p in (tmp_path / "fixed/checkpoints/ppo-rank0").iterdir()}
