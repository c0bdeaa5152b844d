"""The TRL adapter: any TRL trainer is an algorithm by one YAML file, its config checked while composing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_harness
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from test_config import options

from harness.errors import HarnessError
from plugins.algorithms.trl_method import DATA_KINDS, TRLMethod, config_class, import_object, unpaired

# A method none of our YAMLs defines, written as a user would: KTO with its desirable examples weighted up,
# under a name of its own, in a folder outside the repository.
EXTERNAL_METHOD = """\
defaults:
  - /trl@trainer: KTOConfig
  - _self_

_target_: plugins.algorithms.trl_method.TRLMethod
name: heavy_kto
trainer_class: trl.KTOTrainer
data: unpaired
init: ${sft}
reference_model: true
logged: [loss]

trainer:
  beta: 0.2
  desirable_weight: 1.33
  per_device_train_batch_size: 8
  learning_rate: 1.0e-4
  max_length: 64
  max_steps: 4
  logging_steps: 1
  activation_checkpointing: false
"""


def conf_folder(root: Path, method: str, yaml: str) -> Path:
    """A conf folder outside the repository holding one algorithm YAML, as a user writes one."""
    folder = root / "conf" / "algorithm"
    folder.mkdir(parents=True)
    (folder / f"{method}.yaml").write_text(yaml)
    return root / "conf"


@pytest.fixture
def external_conf(tmp_path: Path) -> Path:
    return conf_folder(tmp_path, "heavy_kto", EXTERNAL_METHOD)


# -- pure pieces ----------------------------------------------------------------------------------------------
def test_unpaired_turns_each_pair_into_one_good_and_one_bad_completion() -> None:
    from datasets import Dataset

    pairs = Dataset.from_dict({"prompt": ["a", "b"], "chosen": [" x", " y"], "rejected": [" z", " w"]})
    rows = unpaired(pairs).to_list()
    assert rows == [
        {"prompt": "a", "completion": " x", "label": True},
        {"prompt": "a", "completion": " z", "label": False},
        {"prompt": "b", "completion": " y", "label": True},
        {"prompt": "b", "completion": " w", "label": False},
    ]


def test_the_config_class_is_read_from_the_trainers_signature() -> None:
    import trl

    assert config_class(trl.KTOTrainer, "x") is trl.KTOConfig
    assert config_class(trl.GRPOTrainer, "x") is trl.GRPOConfig
    with pytest.raises(HarnessError, match="names no config class"):
        config_class(dict, "algorithm.trainer_class")


def test_a_trainer_that_cannot_be_imported_is_one_line() -> None:
    with pytest.raises(HarnessError) as error:
        import_object("trl.NoSuchTrainer", "algorithm.trainer_class")
    assert str(error.value).startswith("algorithm.trainer_class='trl.NoSuchTrainer': cannot be imported")
    assert "\n" not in str(error.value)
    with pytest.raises(HarnessError, match=r"algorithm\.data='pairs': expected one of"):
        TRLMethod(name="x", trainer_class="trl.DPOTrainer", data="pairs")
    assert set(DATA_KINDS) == {"demonstrations", "preferences", "unpaired", "prompts"}


# -- every TRL-backed YAML ----------------------------------------------------------------------------------
def test_each_yaml_schema_is_its_trainers_own_config(compose) -> None:
    """The fields checked while composing (the `/trl@trainer` schema) are those of the config class the
    trainer is built with: a YAML cannot name one class for checking and train with another."""
    checked = []
    for algorithm in options("algorithm"):
        cfg = compose([f"algorithm={algorithm}"])
        for node in (cfg.algorithm, cfg.sft):
            if "trainer_class" not in node:
                continue
            trainer_cls = import_object(node.trainer_class, "algorithm.trainer_class")
            schema = OmegaConf.get_type(node.trainer)
            assert schema.__name__ == f"{config_class(trainer_cls, 'x').__name__}Fields", algorithm
            assert node.data in DATA_KINDS
            checked.append(node.name)
    assert {"sft", "dpo", "kto", "orpo", "simpo", "cpo", "online_dpo", "grpo", "dr_grpo", "dapo"} <= set(checked)


def test_the_sft_every_method_starts_from_is_one_node(compose) -> None:
    """One override changes the SFT of the method, of the reward model and of the win-rate baseline alike."""
    cfg = compose(["algorithm=ppo", "sft.trainer.learning_rate=0.002"])
    OmegaConf.resolve(cfg)
    assert cfg.algorithm.init.trainer.learning_rate == 0.002
    assert cfg.reward.init.trainer.learning_rate == 0.002
    assert cfg.eval.win_rate.baseline.init.trainer.learning_rate == 0.002
    assert cfg.algorithm.init == cfg.reward.init == cfg.sft


def test_preference_pairs_have_their_own_sampling_settings(compose) -> None:
    cfg = compose(["generation.temperature=0.7", "generation.max_new_tokens=20"])
    assert cfg.pair_generation.temperature == 1.0 and cfg.pair_generation.max_new_tokens == 40


# -- a method as one YAML outside the repository --------------------------------------------------------------
def test_an_external_yaml_composes_with_its_trainers_fields_checked(compose, external_conf: Path) -> None:
    searchpath = f"hydra.searchpath=[file://{external_conf}]"
    cfg = compose(["algorithm=heavy_kto", searchpath])
    assert cfg.algorithm.trainer.desirable_weight == 1.33
    assert cfg.algorithm.trainer.undesirable_weight == 1.0  # TRL's own default
    with pytest.raises(ConfigCompositionException) as error:
        compose(["algorithm=heavy_kto", searchpath, "algorithm.trainer.desireable_weight=2"])
    assert "desireable_weight" in str(error.value.__cause__ or error.value)
    with pytest.raises(MissingConfigException):  # without the search path it is not there
        compose(["algorithm=heavy_kto"])


def test_any_importable_config_class_is_a_schema(compose) -> None:
    """`/schema@trainer: <module.Class>` for a dataclass that is not TRL's (here our PPO's)."""
    cfg = compose(["algorithm=ppo", "algorithm.trainer.kl_coef=0.3"])
    assert OmegaConf.get_type(cfg.algorithm.trainer).__name__ == "PPOConfigFields"
    with pytest.raises(ConfigCompositionException):
        compose(["algorithm=ppo", "algorithm.trainer.kl_cof=0.3"])
    with pytest.raises(ConfigCompositionException):
        compose(["algorithm=ppo", "algorithm.trainer.batch_size=big"])


@pytest.mark.slow
def test_an_external_yaml_method_runs_in_a_sweep(tmp_path: Path, external_conf: Path) -> None:
    result = run_harness(
        "-m",
        "debug=smoke",
        "algorithm=sft,heavy_kto",
        f"hydra.searchpath=[file://{external_conf}]",
        f"results_dir={tmp_path / 'results'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = {r["algorithm"]: r for r in map(json.loads, map(Path.read_text, tmp_path.rglob("result.json")))}
    assert set(results) == {"sft", "heavy_kto"}
    kto = results["heavy_kto"]
    assert kto["status"] == "complete"
    trained = Path(kto["stages"]["heavy_kto"]["path"])
    start = json.loads((trained / "stage.json").read_text())["inputs"]["start"]
    assert start == results["sft"]["stages"]["sft"]["key"]  # started from the same SFT as algorithm=sft
    assert kto["metrics"]["train/params_changed"] > 0.5
    assert kto["metrics"]["train/global_step"] == 4
    assert (trained / "model.safetensors").exists()
    (comparison,) = tmp_path.rglob("comparison.md")
    assert "heavy_kto" in comparison.read_text()


# A TRL trainer whose `__init__` leaves `args` unannotated (GMPO, Zhao et al. 2025: GRPO with a geometric mean of
# token ratios, in trl.experimental): its YAML's schema names the config class, in one YAML outside the repository.
UNANNOTATED_METHOD = """\
defaults:
  - /trl@trainer: experimental.gmpo.GMPOConfig
  - _self_

_target_: plugins.algorithms.trl_method.TRLMethod
name: gmpo
trainer_class: trl.experimental.gmpo.GMPOTrainer
config_class: ${schema_class:trainer}
data: prompts
init: ${sft}
logged: [reward, loss]
missing_eos_penalty: 1.0

trainer:
  num_generations: 4
  per_device_train_batch_size: 8
  max_completion_length: 24
  beta: 0.1                       # GMPO's own default is 0 (no KL term); the harness's ranges want a KL term here
  learning_rate: 1.0e-3
  max_steps: 3
  logging_steps: 1
  activation_checkpointing: false
  log_completions: false
"""


@pytest.fixture
def unannotated_conf(tmp_path: Path) -> Path:
    return conf_folder(tmp_path, "gmpo", UNANNOTATED_METHOD)


def test_an_unannotated_trainer_takes_the_config_class_its_yaml_schema_names(compose, unannotated_conf: Path) -> None:
    from trl.experimental.gmpo import GMPOConfig, GMPOTrainer

    with pytest.raises(HarnessError, match=r"names no config class.*schema_class:trainer") as error:
        config_class(GMPOTrainer, "algorithm.trainer_class")
    assert "\n" not in str(error.value)
    cfg = compose(["algorithm=gmpo", f"hydra.searchpath=[file://{unannotated_conf}]"])
    named = cfg.algorithm.config_class
    assert config_class(GMPOTrainer, "algorithm.trainer_class", named) is GMPOConfig
    # a YAML whose schema is a trainer's annotated config resolves to that same class
    assert config_class(import_object("trl.DPOTrainer", "x"), "x", compose(["algorithm=dpo"]).algorithm.get(
        "config_class")) is import_object("trl.DPOConfig", "x")


def test_an_unannotated_experimental_trainer_trains_as_one_yaml(tmp_path: Path, unannotated_conf: Path) -> None:
    result = run_harness(
        "debug=smoke",
        "algorithm=gmpo",
        "reward=gold",
        "eval=[gold]",
        f"hydra.searchpath=[file://{unannotated_conf}]",
        f"results_dir={tmp_path / 'results'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.rglob("result.json")
    job = json.loads(path.read_text())
    assert job["status"] == "complete"
    assert job["metrics"]["train/global_step"] == 3
    assert job["metrics"]["train/params_changed"] > 0.5
    assert "train/reward" in job["metrics"]
