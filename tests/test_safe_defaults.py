"""Safe defaults: no repository code runs unless asked, weights are safetensors and only safetensors are loaded,
and credentials never reach result.json, W&B, or Hydra's config records."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, run_harness

from harness.errors import HarnessError
from harness.results import REDACTED, is_compared, is_secret, read_results, redact, redact_overrides

# Unique byte strings, so finding one anywhere on disk can only mean a leak.
HUB_TOKEN = "hf_hubTokenLeak7d41c9e2"
WANDB_API_KEY = "wandbKeyLeak0b6a2e59f1"
MODEL_TOKEN = "hf_modelTokenLeak3f8e1a"

# Files a stage may hold that `torch.save` wrote but that are not model weights. `training_args.bin` is the
# pickled TrainingArguments (settings; nothing loads it back). The rest is the Trainer's resume state, which
# transformers reads back with `torch.load(weights_only=True)`: plain tensors and containers, never code.
TRAINER_STATE = re.compile(r"training_args\.bin|optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state(_\d+)?\.pth")
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
WEIGHT_STAGES = ("base_model", "sft", "dpo", "reward_model", "ppo")


# -- trust_remote_code -------------------------------------------------------------------------------------
class FakeModel:
    def save_pretrained(self, out_dir: Path, **_: Any) -> None:
        pass

    def parameters(self) -> list[torch.Tensor]:
        return [torch.zeros(3)]


class FakeTokenizer:
    pad_token = None
    eos_token = "</s>"

    def save_pretrained(self, out_dir: Path, **_: Any) -> None:
        pass


def recording(calls: list[dict[str, Any]], made: Any) -> type:
    """A stand-in for an Auto* class whose `from_pretrained` records its keyword arguments instead of downloading."""

    class Auto:
        @staticmethod
        def from_pretrained(name_or_path: str, **kwargs: Any) -> Any:
            calls.append({"name_or_path": name_or_path, **kwargs})
            return made

    return Auto


@pytest.mark.parametrize(("overrides", "trusted"), [([], False), (["model.trust_remote_code=true"], True)])
def test_hf_model_runs_repository_code_only_when_asked(
    compose, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, overrides: list[str], trusted: bool
) -> None:
    import transformers

    from harness.runner import build_plugin

    cfg = compose(["model=hf", "model.name_or_path=some-org/some-model", *overrides])
    assert cfg.model.trust_remote_code is trusted
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(transformers, "AutoTokenizer", recording(calls, FakeTokenizer()))
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", recording(calls, FakeModel()))
    build_plugin(cfg.model).build(tmp_path, tmp_path)
    assert [call["name_or_path"] for call in calls] == ["some-org/some-model"] * 2  # tokenizer, then model
    assert [call["trust_remote_code"] for call in calls] == [trusted, trusted]


def test_only_the_hf_model_plugin_mentions_trust_remote_code() -> None:
    """Every other loader reads our own stage directories, where transformers' default (off) is what we want."""
    sources = [*(REPO / "harness").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]
    mentions = [path.relative_to(REPO).as_posix() for path in sources if "trust_remote_code" in path.read_text()]
    assert mentions == ["plugins/models/pretrained.py"]


# -- safetensors ---------------------------------------------------------------------------------------------
def pickled_model_dir(path: Path) -> Path:
    """A tiny causal LM saved the old way: config, tokenizer and a pickled `pytorch_model.bin`, no safetensors."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from plugins.models.scratch import word_level_tokenizer

    tokenizer = word_level_tokenizer(["a b c"], max_length=16)
    config = GPT2Config(n_layer=1, n_embd=8, n_head=2, n_positions=16, vocab_size=len(tokenizer),
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config)
    model.config.save_pretrained(path)
    tokenizer.save_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    return path


def test_pickled_weights_are_never_loaded(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from harness.generation import load_policy
    from plugins.algorithms.checkpoint import _model_dir

    path = pickled_model_dir(tmp_path)
    AutoModelForCausalLM.from_pretrained(path)  # transformers alone would load it: the refusals below are ours
    with pytest.raises(OSError, match=r"model\.safetensors"):
        load_policy(path, "cpu")
    with pytest.raises(HarnessError, match=r"algorithm.path=.*no \*\.safetensors weights"):
        _model_dir(str(path), "algorithm.path")


# -- credentials: redaction ------------------------------------------------------------------------------------
def test_redact_replaces_credentials_anywhere_in_a_nested_config() -> None:
    config = {
        "logger": {"api_key": "k1", "project": "p"},
        "model": {"token": "k2", "pad_token": "<pad>", "revision": None},
        "HF_TOKEN": "k3",
        "callbacks": [{"env": {"WANDB_API_KEY": "k4"}}, {"name": "report"}, ["nested", {"access_token": "k5"}]],
        "algorithm": {
            "trainer": {
                "hub_token": "k6",
                "hub_model_id": None,
                "max_new_tokens": 40,
                "include_num_input_tokens_seen": True,
                "average_tokens_across_devices": True,
                "eos_token": "<eos>",
            }
        },
        "unset": {"token": None},  # nothing to hide; keeps the record honest about what was set
    }
    redacted = redact(config)
    assert redacted == {
        "logger": {"api_key": REDACTED, "project": "p"},
        "model": {"token": REDACTED, "pad_token": "<pad>", "revision": None},
        "HF_TOKEN": REDACTED,
        "callbacks": [{"env": {"WANDB_API_KEY": REDACTED}}, {"name": "report"}, ["nested", {"access_token": REDACTED}]],
        "algorithm": {
            "trainer": {
                "hub_token": REDACTED,
                "hub_model_id": None,
                "max_new_tokens": 40,
                "include_num_input_tokens_seen": True,
                "average_tokens_across_devices": True,
                "eos_token": "<eos>",
            }
        },
        "unset": {"token": None},
    }
    assert config["model"]["token"] == "k2"  # a copy: the job's own config keeps working


def test_overrides_are_redacted_but_still_parse() -> None:
    """The report parses result.json's overrides with Hydra's parser, so a redacted one must stay an override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = ["algorithm=dpo", "+model.token=k1", "algorithm.trainer.hub_token=k2,k3", "~logger.api_key", "seed=1"]
    redacted = redact_overrides(overrides)
    assert redacted == ["algorithm=dpo", f"+model.token='{REDACTED}'", f"algorithm.trainer.hub_token='{REDACTED}'",
                        "~logger.api_key", "seed=1"]
    assert [o.value() for o in OverridesParser.create().parse_overrides(redacted)][1:3] == [REDACTED, REDACTED]
    assert [is_compared(o.split("=")[0]) for o in overrides] == [True, False, False, False, True]
    assert is_secret("hydra.job.env_set.WANDB_API_KEY") and not is_secret("generation.max_new_tokens")


# -- credentials and weights: real runs ---------------------------------------------------------------------------
def files_containing(root: Path, *secrets: str) -> list[str]:
    """Every file under `root` whose bytes contain one of `secrets`."""
    needles = [secret.encode() for secret in secrets]
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")
                  if path.is_file() and any(needle in path.read_bytes() for needle in needles))


def offline_runs(root: Path) -> list[dict[str, Any]]:
    from plugins.loggers.wandb import read_offline_run

    return [read_offline_run(path) for path in sorted((root / "wandb").glob("offline-run-*"))]


@pytest.fixture(scope="module")
def sweep_with_credentials(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DPO and PPO (so every kind of weights: base model, SFT, DPO, reward model, PPO), logged to W&B offline,
    with a hub token in a real config field (TRL's RewardConfig.hub_token) and a W&B key set through Hydra."""
    root = tmp_path_factory.mktemp("credentials")
    done = run_harness(
        "-m", "algorithm=dpo,ppo", "debug=smoke", "logger=wandb", f"results_dir={root}",
        f"reward.trainer.hub_token={HUB_TOKEN}", f"+hydra.job.env_set.WANDB_API_KEY={WANDB_API_KEY}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.mark.slow
def test_every_saved_model_is_safetensors(sweep_with_credentials: Path) -> None:
    cache = sweep_with_credentials / "cache"
    for stage in WEIGHT_STAGES:
        assert list(cache.glob(f"{stage}/*/model.safetensors")), f"stage {stage}: no model.safetensors"
    for config in cache.rglob("config.json"):  # every saved model directory, checkpoints included
        assert (config.parent / "model.safetensors").exists(), config.parent
    pickles = [path for path in sweep_with_credentials.rglob("*") if path.suffix in PICKLE_SUFFIXES]
    assert [path for path in pickles if not TRAINER_STATE.fullmatch(path.name)] == []


@pytest.mark.slow
def test_credentials_stay_out_of_results_wandb_and_hydra_records(sweep_with_credentials: Path) -> None:
    root = sweep_with_credentials
    leaks = [path for path in files_containing(root, HUB_TOKEN, WANDB_API_KEY) if not path.startswith("cache/")]
    assert leaks == []
    results = read_results(root / "sweeps")
    assert sorted(result["algorithm"] for result in results) == ["dpo", "ppo"]
    for result in results:
        assert result["status"] == "complete"
        assert result["config"]["reward"]["trainer"]["hub_token"] == REDACTED
        assert f"reward.trainer.hub_token='{REDACTED}'" in result["overrides"]
        assert "hub_token" not in result["name"]
    jobs = [run for run in offline_runs(root) if run["job_type"] != "comparison"]
    assert len(jobs) == 2
    assert all(run["config"]["reward"]["trainer"]["hub_token"] == REDACTED for run in jobs)


@pytest.mark.slow
def test_credentials_stay_out_of_the_stage_cache(sweep_with_credentials: Path) -> None:
    assert files_containing(sweep_with_credentials / "cache", HUB_TOKEN, WANDB_API_KEY) == []


@pytest.mark.slow
def test_a_rejected_credential_override_leaves_no_trace(tmp_path: Path) -> None:
    """A token given to a plugin that takes none fails the job with one line; the failed job's records (its
    result.json, its W&B run, Hydra's files) show the key with its value redacted."""
    done = run_harness("algorithm=sft", "debug=smoke", "logger=wandb", f"results_dir={tmp_path}",
                       f"+model.token={MODEL_TOKEN}")
    assert done.returncode == 2
    assert "unexpected keyword argument 'token'" in done.stderr and MODEL_TOKEN not in done.stderr + done.stdout
    assert files_containing(tmp_path, MODEL_TOKEN) == []
    (result,) = read_results(tmp_path / "runs")
    assert result["status"] == "failed" and result["config"]["model"]["token"] == REDACTED
    (run,) = offline_runs(tmp_path)
    assert run["config"]["model"]["token"] == REDACTED
