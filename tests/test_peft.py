"""`peft=lora`: every method trains LoRA adapters, saves them alone, and holds one copy of the base weights.

One smoke sweep (SFT, DPO, KTO, PPO, REINFORCE++, GRPO, RAFT, best-of-n on the gold reward) checks what the stages
hold and that the adapters trained; the memory claim is checked by counting the distinct parameter storages of the
models a job holds, built as the methods build them; the adapter chain (a DPO adapter on an SFT adapter) is checked
against merging by hand on a tiny random model.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import results_by_algorithm, run_harness

from harness import adapters
from harness.devices import torch_threads
from harness.errors import HarnessError
from harness.stages import StageOutput, stage_key

SWEPT = ("sft", "dpo", "kto", "ppo", "reinforce_pp", "grpo", "raft", "best_of_n")
TRAINED = ("sft", "dpo", "kto", "ppo", "reinforce_pp", "grpo", "raft")  # raft: its rounds train one adapter on SFT


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Models trained in this process get one torch thread, as the jobs do (cpu_threads=1): on cores other jobs
    share, spinning OpenMP threads made a 2-update PPO here 40x slower."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict[str, dict]:
    """Eight methods with LoRA in one smoke sweep (~30 s on 2 cores): they share the base model and the SFT adapter."""
    root = tmp_path_factory.mktemp("peft")
    result = run_harness(
        "-m", f"algorithm={','.join(SWEPT)}", "peft=lora", "debug=smoke", "reward=gold", "eval=[gold,kl]",
        "cpu_threads=1", "logger=none", f"results_dir={root}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return results_by_algorithm(root / "sweeps")


def stage_path(sweep: dict[str, dict], algorithm: str, stage: str | None = None) -> Path:
    return Path(sweep[algorithm]["stages"][stage or algorithm]["path"])


def lora_settings() -> adapters.PeftSettings:
    return adapters.PeftSettings("lora", {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"})


# -- the sweep --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_method_trains_and_saves_an_adapter_on_its_start(sweep) -> None:
    assert set(sweep) == set(SWEPT)
    assert all(result["status"] == "complete" for result in sweep.values())
    starts = {"sft": stage_path(sweep, "sft", "base_model")} | {m: stage_path(sweep, m, "sft") for m in TRAINED[1:]}
    for method in TRAINED:
        folder = stage_path(sweep, method)
        files = {path.name for path in folder.iterdir()}
        assert {adapters.ADAPTER_WEIGHTS, adapters.ADAPTER_CONFIG, adapters.START} <= files, method
        assert not files & {"model.safetensors", "pytorch_model.bin", "config.json"}, method  # no full weights
        assert adapters.adapter_start(folder) == starts[method].resolve(), method
        config = json.loads((folder / adapters.ADAPTER_CONFIG).read_text())
        assert config["base_model_name_or_path"] == str(starts[method].resolve())
        metrics = sweep[method]["metrics"]
        adapter_count = 2 if method == "ppo" else 1  # PPO trains two: the policy's and the value model's
        assert metrics["train/trainable_parameters"] < 0.1 * adapter_count * metrics["train/total_parameters"], method
        assert metrics["train/params_changed"] == 1.0, method  # every adapter tensor moved
    # the SFT every method starts from is the one stage, trained once
    assert len({result["stages"]["sft"]["key"] for result in sweep.values()}) == 1
    assert "best_of_n" not in sweep["best_of_n"]["stages"]  # it trains nothing


@pytest.mark.slow
def test_the_adapters_learned(sweep) -> None:
    """LoRA's B matrices start at zero (Hu et al. 2022): non-zero ones were moved by gradients."""
    from safetensors.torch import load_file

    for method in TRAINED:
        weights = load_file(stage_path(sweep, method) / adapters.ADAPTER_WEIGHTS)
        moved = [name for name, tensor in weights.items() if "lora_B" in name and tensor.abs().max() > 0]
        assert moved and len(moved) == sum("lora_B" in name for name in weights), method


@pytest.mark.slow
def test_the_kl_reference_is_the_policy_with_its_adapter_off(sweep) -> None:
    """EvalContext scores the samples with the adapter off: the same numbers as loading the start on its own."""
    from harness.generation import load_policy, sample_completions, token_logprobs
    from harness.protocols import EvalContext, Policy

    dpo, sft = stage_path(sweep, "dpo"), stage_path(sweep, "dpo", "sft")
    model, tokenizer = load_policy(dpo, "cpu")
    assert adapters.is_peft_model(model) and adapters.is_start_of(dpo, sft)
    prompts = ["the film was", "i thought the acting"] * 4
    settings = {"max_new_tokens": 8, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "batch_size": 8, "seed": 0}
    samples = sample_completions(model, tokenizer, prompts, settings, "cpu")
    context = EvalContext(
        prompts=prompts, completions=samples.completions, completion_tokens=samples.lengths,
        policy=Policy(path=dpo, reference_path=sft), gold=None, device="cpu", generation=settings,
        completion_ids=samples.token_ids, model=model, tokenizer=tokenizer,
    )  # fmt: skip
    reference = context.reference_logprobs()
    sft_model, sft_tokenizer = load_policy(sft, "cpu", merge=True)
    expected, _ = token_logprobs(sft_model, sft_tokenizer, prompts, samples.token_ids, 1.0, "cpu")
    assert [len(row) for row in reference] == [len(row) for row in expected]
    flat = [(a, b) for ra, rb in zip(reference, expected, strict=True) for a, b in zip(ra, rb, strict=True)]
    assert all(a == pytest.approx(b, abs=1e-4) for a, b in flat)
    assert all(p.requires_grad is False for p in model.parameters())  # evaluation trains nothing


# -- one copy of the base weights ------------------------------------------------------------------------------
@pytest.mark.slow
def test_ppo_holds_one_copy_of_the_sft_weights(sweep) -> None:
    """Policy, reference and value model as train_ppo builds them: full fine-tuning holds three copies of the SFT
    weights (the gold reward: the value model starts from SFT), LoRA one plus its adapters and the value head."""
    from harness.protocols import Reward
    from plugins.algorithms.ppo import load_models

    sft = stage_path(sweep, "ppo", "sft")
    gold = Reward("gold", lambda prompts, _: [0.0] * len(prompts), is_gold=True)
    weights = adapters.storage_bytes(adapters.load_model(sft, merge=True))
    full = load_models(sft, gold, critic=True)
    assert adapters.storage_bytes(full.policy, full.reference, full.value_model) / weights == pytest.approx(3.0, 0.02)
    lora = load_models(sft, gold, critic=True, peft=lora_settings())
    assert lora.reference is None
    held = adapters.storage_bytes(lora.policy, lora.value_model) / weights
    assert 1.0 < held < 1.2  # the SFT weights once, two adapters and a head
    trainable, total = adapters.trainable_parameters(lora.policy)
    assert trainable < 0.2 * total  # the policy's and the value's adapters
    assert [name for name, _ in lora.value_model.named_parameters()] == ["score.weight"]  # its own weights: a head


@pytest.mark.slow
@pytest.mark.parametrize(("peft", "copies"), [(None, 2.0), (lora_settings(), 1.0)])
def test_dpo_holds_one_copy_of_the_sft_weights_with_lora(sweep, tmp_path, peft, copies) -> None:
    """The DPO trainer built as TRLMethod builds it: with LoRA it keeps no reference model of its own."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from plugins.algorithms.trl_method import TRLMethod

    sft = stage_path(sweep, "dpo", "sft")
    pairs = load_from_disk(str(stage_path(sweep, "dpo", "preferences")))["preferences"].select(range(8))
    from harness.train_stage import TrainingStage

    method = TRLMethod(name="dpo", trainer_class="trl.DPOTrainer", data="preferences", reference_model=True)
    stage = TrainingStage.outside_a_run(tmp_path / "dpo", sft, peft=peft)
    model, kwargs = stage.load_start(reference_model=method.reference_model)
    weights = adapters.storage_bytes(model)
    args = DPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, max_length=64)
    trainer = DPOTrainer(
        model=model, args=args, processing_class=AutoTokenizer.from_pretrained(sft), train_dataset=pairs, **kwargs
    )
    held = adapters.storage_bytes(trainer.model, trainer.ref_model) / weights
    assert copies <= held < copies + 0.15


# -- resuming a killed LoRA PPO build -------------------------------------------------------------------------
@pytest.mark.slow
def test_lora_ppo_checkpoints_hold_the_adapters_and_resume_exactly(sweep, tmp_path) -> None:
    """train_ppo with LoRA: 2 updates, a checkpoint after the first. It holds the two adapters (policy and value)
    and the value head, not the frozen weights; a second call resumes from it and ends on the very adapter of the
    uninterrupted run. The value adapter trained too (its B matrices left zero)."""
    from datasets import load_from_disk
    from safetensors.torch import load_file

    from harness.api import TrainingStage
    from harness.protocols import Reward
    from harness.training import MetricsRecorder
    from plugins.algorithms.ppo import load_config, train_ppo

    sft = stage_path(sweep, "ppo", "sft")
    prompts = list(load_from_disk(sweep["ppo"]["stages"]["data"]["path"])["prompts"]["prompt"])
    words = Reward("words", lambda _, completions: [min(len(c.split()), 8) / 8 for c in completions], is_gold=True)
    config = load_config({"total_episodes": 32, "batch_size": 16, "response_length": 16, "save_every": 1})

    class Silent:
        def log(self, *_: object, **__: object) -> None: ...

    def train(out_dir: Path) -> dict:
        recorder = MetricsRecorder(Silent(), "train", out_dir / "log_history.jsonl")
        return train_ppo(config, TrainingStage.outside_a_run(out_dir, sft, peft=lora_settings()), reward=words,
                         prompts=prompts, recorder=recorder, device="cpu", seed=0)  # fmt: skip

    out_dir = tmp_path / "ppo"
    train(out_dir)
    uninterrupted = load_file(out_dir / adapters.ADAPTER_WEIGHTS)
    assert adapters.adapter_start(out_dir) == sft.resolve()
    state_dir = out_dir / "checkpoints" / "ppo-rank0"
    assert sorted(p.name for p in state_dir.iterdir()) == ["policy.safetensors", "state.pt", "value.safetensors"]
    saved = load_file(state_dir / "policy.safetensors")
    assert saved and all(".lora_" in name for name in saved)  # the adapters only
    assert any(".value." in name for name in saved) and any(".default." in name for name in saved)
    assert all(t.abs().max() > 0 for name, t in saved.items() if "lora_B" in name)  # both adapters moved
    assert list(load_file(state_dir / "value.safetensors")) == ["score.weight"]

    metrics = train(out_dir)  # finds the checkpoint of update 1: redoes update 2 only
    assert metrics["resumed_from_step"] == 1
    resumed = load_file(out_dir / adapters.ADAPTER_WEIGHTS)
    assert resumed.keys() == uninterrupted.keys() and not any(".value." in name for name in resumed)
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)


# -- loading adapter stages (a tiny random model: no training) --------------------------------------------------
def tiny_chain(root: Path) -> tuple[Path, Path, Path]:
    """A base model and two random (non-zero) adapters saved as stages are: SFT on the base, DPO on the SFT merged."""
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    base, sft, dpo = root / "base_model" / "k0", root / "sft" / "k1", root / "dpo" / "k2"
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=32, pad_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(base)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    adapters.save_adapter(get_peft_model(adapters.load_model(base), lora), sft, start=base)
    adapters.save_adapter(get_peft_model(adapters.load_model(sft, merge=True), lora), dpo, start=sft)
    return base, sft, dpo


def test_an_adapter_chain_loads_as_merging_by_hand(tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    base, sft, dpo = tiny_chain(tmp_path / "cache")
    ids = torch.randint(0, 50, (2, 12))
    by_hand = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), sft).merge_and_unload()
    sft_logits = by_hand(ids).logits
    by_hand = PeftModel.from_pretrained(by_hand, dpo).merge_and_unload()
    dpo_logits = by_hand(ids).logits

    loaded = adapters.load_model(dpo)
    assert adapters.is_peft_model(loaded)  # evaluated as an adapter, on its start
    torch.testing.assert_close(loaded(ids).logits, dpo_logits, atol=1e-5, rtol=1e-5)
    with adapters.adapter_disabled(loaded):  # the start policy, from the same weights
        torch.testing.assert_close(loaded(ids).logits, sft_logits, atol=1e-5, rtol=1e-5)
    merged = adapters.load_model(dpo, merge=True)
    assert not adapters.is_peft_model(merged)
    assert all(p.requires_grad for p in merged.parameters())  # a start to train from, as from_pretrained gives
    torch.testing.assert_close(merged(ids).logits, dpo_logits, atol=1e-5, rtol=1e-5)
    assert adapters.is_start_of(dpo, sft) and not adapters.is_start_of(dpo, base) and not adapters.is_start_of(sft, sft)
    # a reward model starts from the SFT adapter merged, with a new scalar head (plugins/rewards/learned.py)
    scorer = adapters.load_model(sft, AutoModelForSequenceClassification, merge=True, num_labels=1)
    assert all(p.requires_grad for p in scorer.parameters())
    torch.testing.assert_close(scorer.transformer(ids).last_hidden_state, by_hand_hidden(base, sft, ids))

    # a moved cache still resolves: start.json is relative first
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "cache", moved)
    torch.testing.assert_close(adapters.load_model(moved / "dpo" / "k2")(ids).logits, dpo_logits, atol=1e-5, rtol=1e-5)


def by_hand_hidden(base: Path, sft: Path, ids: torch.Tensor) -> torch.Tensor:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), sft).merge_and_unload()
    return merged.transformer(ids).last_hidden_state


def test_an_adapter_is_never_loaded_from_pickled_weights(tmp_path: Path) -> None:
    _, sft, _ = tiny_chain(tmp_path)
    (sft / adapters.ADAPTER_WEIGHTS).rename(sft / "adapter_model.bin")
    with pytest.raises(HarnessError, match=r"adapter_model\.safetensors"):
        adapters.load_model(sft)


def test_the_checkpoint_method_evaluates_an_adapter_on_its_start(tmp_path: Path) -> None:
    from plugins.algorithms.checkpoint import Checkpoint

    _, sft, dpo = tiny_chain(tmp_path)
    policy = Checkpoint(path=str(dpo), reference=str(sft)).train(run=None)  # type: ignore[arg-type]
    assert (policy.path, policy.reference_path) == (dpo, sft) and adapters.is_start_of(policy.path, sft)


def test_adapters_switch_without_freezing_what_trains(tmp_path: Path) -> None:
    """peft's own switches set requires_grad (the active adapter's on, the rest off); ours keep it as it was, so a
    model training two adapters (PPO's policy and value) keeps training both."""
    from peft import LoraConfig, get_peft_model

    base, _, _ = tiny_chain(tmp_path)
    lora = LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(adapters.load_model(base), lora)
    model.add_adapter("value", lora)
    model.set_requires_grad("value", True)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    assert any(".value." in name and flag for name, flag in flags.items())
    with adapters.adapter_active(model, "value"):
        assert model.active_adapter == "value"
        assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    with adapters.adapter_disabled(model):
        assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert model.active_adapter == "default" and {n: p.requires_grad for n, p in model.named_parameters()} == flags


# -- settings and cache keys --------------------------------------------------------------------------------------
@pytest.fixture
def configured(compose):
    """`configured(overrides)`: the config a job runs with (each plugin's `smoke:` block merged or dropped)."""
    from harness.app import apply_smoke

    def make(overrides: list[str]):
        cfg = compose(overrides)
        apply_smoke(cfg, overrides)
        return cfg

    return make


def test_peft_settings_are_checked_in_one_line(configured) -> None:
    assert adapters.settings(configured([])["peft"], "cpu") is None  # the default: full fine-tuning
    lora = adapters.settings(configured(["peft=lora"])["peft"], "cpu")
    assert lora is not None and lora.lora_config().r == 8 and lora.lora_config().lora_dropout == 0.0
    smoke = adapters.settings(configured(["peft=lora", "debug=smoke"])["peft"], "cpu")
    assert smoke is not None and smoke.lora["r"] == 4  # half the rank for the half-width smoke model
    with pytest.raises(HarnessError, match=r"^peft.rank: not a peft.LoraConfig field; expected one of .*\br\b"):
        adapters.settings(configured(["peft=lora", "+peft.rank=4"])["peft"], "cpu")
    with pytest.raises(HarnessError, match=r"^peft=qlora: its 4-bit base needs (bitsandbytes|a CUDA GPU)"):
        adapters.settings(configured(["peft=qlora"])["peft"], "cpu")


class CapturingRun:
    """Just enough of a Run for a method to name its stage: the configs it asks for are kept, nothing is built."""

    def __init__(self, cfg) -> None:
        self.cfg, self.seed, self.device = cfg, 0, "cpu"
        self.configs: dict[str, dict] = {}

    def base_model(self) -> StageOutput:
        return StageOutput("base_model", "base0", Path("base"), False, 0.0)

    def datasets(self) -> StageOutput:
        return StageOutput("data", "data0", Path("data"), False, 0.0)

    def stage(self, name, config, inputs, build, collective=False, parts=()) -> StageOutput:
        self.configs[name] = config
        return StageOutput(name, stage_key(name, config, inputs), Path(name), False, 0.0)

    def train_stage(self, *args, **kwargs) -> StageOutput:  # the core's training stage, on this run's `stage`
        from harness.train_stage import train_stage

        return train_stage(self, *args, **kwargs)


def test_only_adapter_stages_have_peft_in_their_key(configured) -> None:
    """peft=none leaves a training stage's config, so its key, as it always was: cached full fine-tuning stages
    (the demo's) are reused; a LoRA stage never shares a full one's entry."""
    from harness.runner import build_plugin

    full, lora = CapturingRun(configured([])), CapturingRun(configured(["peft=lora"]))
    full_sft, lora_sft = (build_plugin(run.cfg.sft).stage(run) for run in (full, lora))
    assert set(full.configs["sft"]) == {"algorithm", "trainer_class", "data", "trainer", "reference_model", "seed"}
    assert lora.configs["sft"] == {**full.configs["sft"], "peft": lora.configs["sft"]["peft"]}
    assert lora.configs["sft"]["peft"]["name"] == "lora" and full_sft.key != lora_sft.key


@pytest.mark.slow
def test_qlora_without_bitsandbytes_or_a_gpu_stops_before_any_training(tmp_path: Path) -> None:
    result = run_harness("peft=qlora", "debug=smoke", "logger=none", f"results_dir={tmp_path}")
    assert result.returncode == 2  # a HarnessError
    assert "peft=qlora: its 4-bit base needs" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "cache" / "base_model").exists()  # nothing was trained, not even the base model
