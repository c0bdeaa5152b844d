"""One beta (plugins/algorithms/kl.py): kl_beta is the coefficient of the sequence-level KL in every method, each
trainer's own knob is derived from it in one place, and the missing-EOS penalty means the same everywhere."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from harness.declarations import kl_beta_warning, split_declarations
from harness.errors import HarnessError
from harness.protocols import Reward
from plugins.algorithms import kl
from plugins.algorithms.ppo import apply_missing_eos_penalty
from plugins.algorithms.trl_method import TRLMethod, as_trl_reward

# What each algorithm's composed config must make of kl_beta (the table in kl.py's docstring): the kind its YAML
# declares, and what the conversion measures when the stage is built (None: the composed value is the native one).
TRL_KNOBS = {
    "dpo": ("dpo", None),
    "rdpo": ("dpo", None),
    "hinge": ("dpo", None),
    "nca": ("dpo", None),
    "ipo": ("dpo", "completion_tokens"),
    "kto": ("sequence", None),
    "online_dpo": ("sequence", None),
    "rloo": ("sequence", None),
    "grpo": ("grpo", "reward_std"),
    "dapo": ("grpo", "reward_std"),
    "gspo": ("grpo", "reward_std"),  # GRPO's loss with a sequence ratio: the same KL term, the same conversion
    "cispo": ("grpo", "reward_std"),
    "sapo": ("grpo", "reward_std"),
    "dr_grpo": ("grpo", None),
}
PPO_KNOBS = ("ppo", "reinforce_pp")  # our trainer: `kl_coef: ${default:${kl_beta},...}`, kind sequence
NO_REFERENCE = ("cpo", "simpo", "orpo")  # no reference policy, so no KL to it: kl_beta does not apply


# -- the conversions, on worked numbers -----------------------------------------------------------------------
def test_a_sequence_level_knob_is_kl_beta_itself() -> None:
    """DPO's beta multiplies the summed log-ratio (as do rDPO's, the hinge's, NCA's, KTO's, online DPO's), RLOO's and
    PPO's the summed KL in the reward, Dr. GRPO's the summed KL against unscaled advantages: 0.2 stays 0.2."""
    assert kl.native_beta("sequence", 0.2, {}) == 0.2
    for loss_type in (["sigmoid"], ["robust"], ["hinge"], ["nca_pair"], ["sigmoid", "sft"], "sigmoid"):
        assert kl.measurement("dpo", {"loss_type": loss_type}) is None
        assert kl.native_beta("dpo", 0.2, {"loss_type": loss_type}) == 0.2
    assert kl.native_beta("grpo", 0.2, {"scale_rewards": "none"}) == 0.2


def test_ipo_beta_is_kl_beta_times_the_mean_completion_length() -> None:
    """TRL's IPO loss is (rho_w / L_w - rho_l / L_l - 1 / (2 beta))^2. kl_beta 0.05 on completions of 12 tokens:
    beta = 0.05 x 12 = 0.6, whose target 1 / (2 x 0.6) = 0.8333 nats per token is 10 nats per completion, the
    1 / (2 tau) = 1 / 0.1 = 10 of IPO with tau = kl_beta on the summed log-ratio (Azar et al. 2023, eq. 17)."""
    trainer = {"loss_type": ["ipo"]}
    assert kl.measurement("dpo", trainer) == "completion_tokens"
    beta = kl.native_beta("dpo", 0.05, trainer, completion_tokens=12)
    assert beta == pytest.approx(0.6)
    assert 12 / (2 * beta) == pytest.approx(1 / (2 * 0.05))
    assert kl.measurement("dpo", {"loss_type": ["sigmoid_norm"]}) == "completion_tokens"


def test_losses_of_both_kinds_cannot_share_one_beta() -> None:
    with pytest.raises(HarnessError, match=r"loss_type=\['sigmoid', 'ipo'\]: mixes losses"):
        kl.measurement("dpo", {"loss_type": ["sigmoid", "ipo"]})


def test_grpo_beta_is_kl_beta_over_the_reward_std_it_divides_advantages_by() -> None:
    """Rewards [0, 2 | 1, 1] in groups of 2: within-group stds (Bessel) sqrt(2) and 0, mean 0.70711; kl_beta 0.1:
    beta = 0.1 / 0.70711 = 0.14142. scale_rewards=batch: the std of all four, sqrt(2/3) = 0.8165, beta 0.12247."""
    rewards = [0.0, 2.0, 1.0, 1.0]
    sigma = kl.group_reward_std(rewards, 2)
    assert sigma == pytest.approx(math.sqrt(2) / 2)
    assert kl.native_beta("grpo", 0.1, {"scale_rewards": "group"}, reward_std=sigma) == pytest.approx(0.141421, 1e-5)
    batch = kl.group_reward_std(rewards, 2, "batch")
    assert batch == pytest.approx(math.sqrt(2 / 3))
    assert kl.native_beta("grpo", 0.1, {"scale_rewards": "batch"}, reward_std=batch) == pytest.approx(0.122474, 1e-5)
    assert kl.measurement("grpo", {"scale_rewards": "group"}) == kl.measurement("grpo", {}) == "reward_std"


def test_the_std_is_trls_own() -> None:
    """The sigma measured is the one GRPOTrainer divides by (trl.trainer.utils.nanstd per group), averaged."""
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([0.3, -1.0, 0.9, 0.2, 0.5, 0.5, 0.1, 0.8, -0.7, 1.2, 0.0, 0.4])
    theirs = nanstd(rewards.view(-1, 4), dim=1).mean().item()
    assert kl.group_reward_std(rewards.tolist(), 4) == pytest.approx(theirs, 1e-6)


def test_a_reward_that_does_not_vary_has_no_scale_to_convert_into() -> None:
    with pytest.raises(HarnessError, match=r"kl_beta=0.1: the starting policy's rewards do not vary"):
        kl.native_beta("grpo", 0.1, {}, reward_std=0.0)


def test_the_grpo_loss_weighs_summed_kl_against_the_advantage_for_every_normaliser() -> None:
    """The claim behind beta = kl_beta / sigma: in TRL's GRPO loss (-A ratio_t + beta k3_t, masked, then normalised
    per completion, per batch or by a constant), both terms share a completion's normaliser, so token by token the
    KL's push over the advantage's is the same whatever the completion's length. Two completions of 3 and 1
    tokens, A = [1, -1], beta 0.4, on-policy (d ratio_t / d logp_t = 1) and pi_ref / pi = 0.5 at every token
    (d k3_t / d logp_t = 1 - 0.5): the ratio is 0.4 x 0.5 / -A = [-0.2, 0.2] on every token, for every normaliser."""
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    advantages, beta = torch.tensor([[1.0], [-1.0]]), 0.4
    normalisers = {
        "grpo": lambda x: ((x * mask).sum(-1) / mask.sum(-1)).mean(),
        "dapo": lambda x: (x * mask).sum() / mask.sum(),
        "dr_grpo": lambda x: (x * mask).sum() / (2 * 3),
    }
    expected = (beta * 0.5 / -advantages).expand_as(mask)[mask.bool()]
    for name, normalise in normalisers.items():
        grads = {}
        for term in ("advantage", "kl"):
            logp = torch.zeros(2, 3, requires_grad=True)
            ratio = torch.exp(logp - logp.detach())
            ref_logp = logp.detach() - math.log(2.0)
            k3 = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
            normalise(-advantages * ratio if term == "advantage" else beta * k3).backward()
            grads[term] = logp.grad[mask.bool()]
        assert torch.allclose(grads["kl"] / grads["advantage"], expected), name


def test_the_mean_completion_length_counts_the_eos_dpo_appends() -> None:
    from plugins.models.scratch import word_level_tokenizer

    tokenizer = word_level_tokenizer(["a good film", "a bad one"], 32)
    assert kl.mean_completion_tokens(["good film", "a bad one <eos>", "film"], tokenizer) == pytest.approx(
        statistics.fmean([3, 4, 2])
    )


def test_sigma_is_measured_on_groups_of_one_prompts_samples() -> None:
    """measure_reward_std samples `num_generations` completions of each prompt in a row, so each group of rewards
    TRL would normalise together shares a prompt, and scores them with the reward TRL sees (completion ids given)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from plugins.models.scratch import word_level_tokenizer

    tokenizer = word_level_tokenizer(["the film was good", "the plot was bad and long"], 16)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=16, n_embd=16, n_layer=1, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    seen: list[str] = []

    def reward_func(prompts, completions, completion_ids):
        seen.extend(prompts)
        return [float(len(ids)) for ids in completion_ids]

    prompts = ["the film", "the plot", "the film was"]
    trainer = {"num_generations": 4, "max_completion_length": 6, "temperature": 1.0}
    sigma = kl.measure_reward_std(model, tokenizer, prompts, reward_func, trainer, seed=0)
    assert seen == [p for p in prompts for _ in range(4)]
    assert sigma >= 0 and math.isfinite(sigma)


# -- the composed configs -------------------------------------------------------------------------------------
def method(cfg) -> TRLMethod:
    """The algorithm node as the harness builds it (declarations and smoke budgets out), without its start."""
    node = OmegaConf.to_container(cfg.algorithm, resolve=True)
    for key in ("curves", "ranges", "smoke", "headline", "kl_beta_ignored", "search"):
        node.pop(key, None)
    node["init"] = node["pairs_from"] = None
    return instantiate(node, _convert_="all")


@pytest.mark.parametrize("algorithm", sorted(TRL_KNOBS))
def test_the_composed_knob_is_what_the_module_says(compose, algorithm: str) -> None:
    """At kl_beta=0.2 each method's trainer gets kl.native_beta of 0.2: at once where no measurement is needed
    (the composed value), else from the measured sigma or length (here 0.5 and 10)."""
    kind, needed = TRL_KNOBS[algorithm]
    built = method(compose([f"algorithm={algorithm}", "kl_beta=0.2"]))
    assert built.kl_knob == {"field": "beta", "kind": kind, "kl_beta": 0.2}
    assert built._kl_measurement() == needed
    if needed is None:
        assert built.trainer["beta"] in (0.2, [0.2])  # online DPO: one beta per epoch
        assert kl.native_beta(kind, 0.2, built.trainer) == 0.2
    elif needed == "reward_std":
        assert kl.native_beta(kind, 0.2, built.trainer, reward_std=0.5) == pytest.approx(0.4)
    else:
        assert kl.native_beta(kind, 0.2, built.trainer, completion_tokens=10) == pytest.approx(2.0)


@pytest.mark.parametrize(("algorithm", "own"), [("grpo", 0.5), ("ipo", 0.5), ("dpo", 0.3)])
def test_without_kl_beta_each_method_keeps_its_own_default(compose, algorithm: str, own: float) -> None:
    built = method(compose([f"algorithm={algorithm}"]))
    assert built.trainer["beta"] == own
    assert built.kl_knob["kl_beta"] is None and built._kl_measurement() is None  # nothing converted or measured


def test_ppo_takes_kl_beta_as_it_is(compose) -> None:
    for algorithm in PPO_KNOBS:
        cfg = compose([f"algorithm={algorithm}", "kl_beta=0.2"])
        assert cfg.algorithm.trainer.kl_coef == kl.native_beta("sequence", 0.2, {})
    assert compose(["algorithm=ppo"]).algorithm.trainer.kl_coef == 0.1


def test_every_method_that_kl_beta_reaches_is_in_the_table() -> None:
    """No algorithm left out: every algorithm YAML that reads kl_beta, itself or through the YAML it extends (its
    defaults list), is one whose conversion the tests above check; the reference-free ones never read it."""
    import yaml

    from harness.app import CONFIG_DIR

    folder = Path(CONFIG_DIR) / "algorithm"
    texts = {path.stem: path.read_text() for path in folder.glob("*.yaml")}

    def reads_kl_beta(name: str) -> bool:
        parents = [item for item in (yaml.safe_load(texts[name]) or {}).get("defaults", []) if str(item) in texts]
        return "${kl_beta}" in texts[name] or any(reads_kl_beta(parent) for parent in parents)

    assert {name for name in texts if reads_kl_beta(name)} == set(TRL_KNOBS) | set(PPO_KNOBS)
    assert set(NO_REFERENCE) <= set(texts)


def test_a_method_kl_beta_cannot_reach_says_why_in_one_warning_line(compose) -> None:
    """kl_beta is never dropped silently: cpo (no reference, so no KL to weigh) warns with the reason its YAML
    declares; dpo takes kl_beta as its beta and warns nothing; nor does cpo without kl_beta."""

    def warning(overrides: list[str]) -> str | None:
        cfg = compose(overrides)
        return kl_beta_warning(cfg.algorithm.name, cfg.get("kl_beta"), split_declarations(cfg.algorithm)[1])

    assert warning(["algorithm=cpo", "kl_beta=0.1"]) == (
        "kl_beta=0.1: cpo has no KL term to a reference (CPO's beta scales the policy's own log-probabilities); ignored"
    )
    assert warning(["algorithm=dpo", "kl_beta=0.1"]) is None
    assert warning(["algorithm=cpo"]) is None


def test_every_algorithm_takes_kl_beta_or_declares_why_not(compose) -> None:
    """Each algorithm YAML either carries kl_beta into its config (a kl_knob, PPO's kl_coef) or declares
    `kl_beta_ignored` (harness/declarations.py): never neither (a silent drop), never both."""
    from harness.app import CONFIG_DIR

    for name in sorted(path.stem for path in (Path(CONFIG_DIR) / "algorithm").glob("*.yaml")):
        algorithm = compose([f"algorithm={name}", "kl_beta=0.123"]).algorithm
        node = OmegaConf.to_container(algorithm, resolve=True)
        for start in ("init", "pairs_from"):  # the SFT node they start from or sample pairs with
            node.pop(start, None)
        takes = "0.123" in str(node)
        assert takes != ("kl_beta_ignored" in algorithm), name


def test_a_knob_set_by_hand_beside_kl_beta_is_refused(compose) -> None:
    cfg = compose(["algorithm=grpo", "kl_beta=0.2", "algorithm.trainer.beta=0.05"])
    with pytest.raises(Exception, match=r"algorithm.trainer.beta=0.05 with kl_beta=0.2: kl_beta sets beta"):
        method(cfg)


class StageRecorder:
    """Just enough of a Run to see the stage config a method hashes, and to measure sigma on a tiny model."""

    def __init__(self, train_dataset=None) -> None:
        self.cfg, self.seed, self.device, self.configs = {}, 0, "cpu", []
        self.train_dataset = train_dataset

    def reward(self) -> Reward:
        return Reward(name="judge", fn=lambda prompts, completions: [0.0] * len(prompts), is_gold=False)

    def datasets(self):
        return None

    def stage(self, name, config, inputs, build, collective=False):
        self.configs.append(config)

    def train_stage(self, name, config, inputs, build, *, start, snapshots=False):
        self.configs.append(config)


@pytest.mark.parametrize(
    ("overrides", "converted"),
    [
        (["algorithm=grpo"], False),
        (["algorithm=rloo", "kl_beta=0.2"], False),
        (["algorithm=grpo", "kl_beta=0.2"], True),
    ],
)
def test_only_a_measured_conversion_enters_the_stage_key(compose, overrides: list[str], converted: bool) -> None:
    """Stages trained before kl_beta was converted keep their keys (kl_beta null, or a conversion that is the
    identity); a measured one adds what it converts, since the trainer field then holds kl_beta, not the native."""
    run = StageRecorder()
    method(compose(overrides))._stage(run, start=None)
    (config,) = run.configs
    assert ("kl_knob" in config) is converted
    if converted:
        assert config["kl_knob"] == {"field": "beta", "kind": "grpo", "kl_beta": 0.2}


def test_trl_method_measures_sigma_on_a_seeded_draw_and_leaves_the_tokenizer_as_it_was() -> None:
    from datasets import Dataset
    from transformers import GPT2Config, GPT2LMHeadModel

    from plugins.models.scratch import word_level_tokenizer

    tokenizer = word_level_tokenizer(["the film was good", "the plot was bad and long"], 16)
    tokenizer.padding_side = "right"
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=16, n_embd=16, n_layer=1, n_head=2))
    prompts = Dataset.from_dict({"prompt": ["the film", "the plot", "the film was", "the plot was"]})
    built = TRLMethod(
        "grpo", "trl.GRPOTrainer", "prompts",
        trainer={"beta": 0.2, "num_generations": 2, "max_completion_length": 5},
        kl_knob={"field": "beta", "kind": "grpo", "kl_beta": 0.2},
    )  # fmt: skip
    kwargs = {"train_dataset": prompts, "reward_funcs": lambda prompts, completions, completion_ids: [
        float(len(ids)) for ids in completion_ids
    ]}  # fmt: skip
    sigma = built._measure_reward_std(StageRecorder(), model.eval(), tokenizer, kwargs)
    assert sigma == built._measure_reward_std(StageRecorder(), model, tokenizer, kwargs)  # seeded: the same draw
    assert sigma > 0 and tokenizer.padding_side == "right"


# -- the missing-EOS penalty: one meaning ---------------------------------------------------------------------
def test_the_missing_eos_penalty_is_subtracted_alike_in_ppo_and_the_trl_reward() -> None:
    """Scores [0.9, 0.8, -0.5], the second and third cut off before EOS (id 2), penalty 1: both give
    [0.9, -0.2, -1.5]; a replacement by -1 would give -1 for both."""
    scores = [0.9, 0.8, -0.5]
    completion_ids = [[5, 6, 2], [5, 6, 7], [8, 9, 9]]
    contains_eos = torch.tensor([2 in ids for ids in completion_ids])
    ours = apply_missing_eos_penalty(torch.tensor(scores), contains_eos, 1.0).tolist()
    reward = Reward(name="judge", fn=lambda prompts, completions: list(scores), is_gold=False)
    trls = as_trl_reward(reward, eos_token_id=2, missing_eos_penalty=1.0)(
        prompts=["p"] * 3, completions=["a", "b", "c"], completion_ids=completion_ids
    )
    assert ours == pytest.approx(trls)
    assert trls == pytest.approx([0.9, -0.2, -1.5])


def test_online_dpo_has_one_missing_eos_penalty_applied_once(compose) -> None:
    """TRL's OnlineDPOTrainer would subtract its own OnlineDPOConfig.missing_eos_penalty after our reward already
    did: it stays null, and setting it is a one-line error naming the one setting."""
    cfg = compose(["algorithm=online_dpo"])
    assert cfg.algorithm.missing_eos_penalty == 1.0 and cfg.algorithm.trainer.missing_eos_penalty is None
    with pytest.raises(HarnessError) as error:
        method(compose(["algorithm=online_dpo", "algorithm.trainer.missing_eos_penalty=0.5"]))._stage(
            StageRecorder(), start=None
        )
    assert str(error.value).startswith("algorithm.trainer.missing_eos_penalty=0.5: the trainer's own penalty")
    assert "expected algorithm.missing_eos_penalty=0.5" in str(error.value) and "\n" not in str(error.value)


SAMPLING_ONLINE = ("grpo", "dapo", "dr_grpo", "rloo", "online_dpo", "ppo", "reinforce_pp")


@pytest.mark.parametrize("algorithm", SAMPLING_ONLINE)
def test_every_method_that_samples_online_has_the_one_setting(compose, algorithm: str) -> None:
    cfg = compose([f"algorithm={algorithm}", "algorithm.missing_eos_penalty=0.25"])
    assert cfg.algorithm.missing_eos_penalty == 0.25
    assert cfg.algorithm.trainer.get("missing_eos_penalty") in (None, 0.25)  # TRL's own knob off, or PPO's handed down


def ppo(cfg):
    """PPO as the harness builds it, without its start."""
    from plugins.algorithms.ppo import PPO

    node = OmegaConf.to_container(cfg.algorithm, resolve=True)
    return PPO(node["name"], None, node["trainer"], node["missing_eos_penalty"])


def test_ppos_missing_eos_penalty_is_set_where_every_methods_is_and_keyed_where_it_was(compose) -> None:
    """algorithm.missing_eos_penalty, handed to the loop in PPOConfig: at the default the stage key's trainer settings
    hold missing_eos_penalty=1.0 as before, so stages cached before the move are found."""
    from plugins.algorithms.ppo import PPOConfig, load_config, stage_trainer

    assert compose(["algorithm=ppo"]).algorithm.missing_eos_penalty == PPOConfig().missing_eos_penalty == 1.0
    assert stage_trainer(load_config(ppo(compose(["algorithm=ppo"]))._trainer())) == stage_trainer(PPOConfig())
    assert (
        load_config(ppo(compose(["algorithm=ppo", "algorithm.missing_eos_penalty=0"]))._trainer()).missing_eos_penalty
        == 0
    )
    with pytest.raises(HarnessError) as error:
        ppo(compose(["algorithm=ppo", "algorithm.trainer.missing_eos_penalty=0.5"]))._trainer()
    assert str(error.value) == (
        "algorithm.trainer.missing_eos_penalty=0.5: the setting moved to algorithm.missing_eos_penalty, as in every "
        "method; expected algorithm.missing_eos_penalty=0.5"
    )
    with pytest.raises(HarnessError) as error:
        ppo(compose(["algorithm=ppo", "algorithm.missing_eos_penalty=null"]))._trainer()
    assert str(error.value) == "algorithm.missing_eos_penalty=None: expected a number >= 0 (0 = off)"


def test_a_missing_eos_penalty_is_a_number_zero_is_off(compose) -> None:
    built = method(compose(["algorithm=grpo", "algorithm.missing_eos_penalty=null"]))
    with pytest.raises(HarnessError, match=r"^algorithm.missing_eos_penalty=None: expected a number >= 0 \(0 = off\)$"):
        built._stage(StageRecorder(), start=None)
    run = StageRecorder()
    method(compose(["algorithm=grpo", "algorithm.missing_eos_penalty=0"]))._stage(run, start=None)
    assert run.configs[0]["missing_eos_penalty"] == 0
