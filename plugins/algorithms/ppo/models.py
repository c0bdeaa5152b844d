"""PPO's models: the policy, the frozen reference, the value model (none for REINFORCE++), and the forward passes
the loop runs through them, batched by response length.

With `peft=lora` the policy is a LoRA adapter on the SFT weights, the reference is the same weights with the adapter
off, and the value model is a second adapter on them with its own scalar head: one copy of the SFT weights for all
three (the learned reward model is the only other one).
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.api import (
    HarnessError,
    PeftSettings,
    Reward,
    adapter_active,
    adapter_disabled,
    load_model,
)
from plugins.algorithms.ppo.maths import entropy_from_logits, logprobs_from_logits

if typing.TYPE_CHECKING:
    from plugins.algorithms.ppo.config import PPOConfig


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Dropout off, so rollout and update logprobs agree (Huang et al. 2024)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding (what `generate` uses), so a prompt's padding never shifts it."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, context: int) -> torch.Tensor:
    """Logits that predict each response token: outputs at positions context-1 ... end-1. Only those are
    projected onto the vocabulary (`logits_to_keep`): the prompt's would be thrown away, and with a real
    vocabulary they are most of the memory."""
    keep = input_ids.shape[1] - context + 1
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        logits_to_keep=keep,
    ).logits
    return logits[:, -keep:-1]


class ValueModel(torch.nn.Module):
    """V(s) at every position: a transformer backbone and a scalar head (its own network, Huang et al. 2024)."""

    def __init__(self, classifier: Any) -> None:
        super().__init__()
        self.backbone = classifier.base_model  # e.g. GPT2Model under GPT2ForSequenceClassification
        self.score = classifier.score  # Linear(hidden, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask)
        ).last_hidden_state
        return self.score(hidden).squeeze(-1).float()


VALUE_ADAPTER = "value"  # with LoRA: the value model's adapter, beside the policy's ("default") on the same weights


class AdapterValueModel(torch.nn.Module):
    """V(s) with LoRA: the policy's own frozen SFT weights seen through a second adapter (`value`), and a scalar head.

    Why there, and not as an adapter on the reward model (whose head would start it, as `load_value_model` does): the
    reward model belongs to the reward function, which scores through it with no adapter in the way, and the gold
    reward has none; the policy's weights are held anyway. So the critic costs an adapter and a head, and it still
    shares no trained weight with the policy (Huang et al. 2024 keep the two networks apart). Its head starts at
    zero (V = 0), as the SFT-started critic of a run without a reward model does.

    Its parameters are the head alone: the adapter lives in the policy's layers, so the policy's optimizer step,
    checkpoint and gradient clipping carry it. The policy is kept in a list, not as a submodule, so that its weights
    are not this module's too (the optimizer would see them twice)."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.score = torch.nn.Linear(policy.get_base_model().config.hidden_size, 1, bias=False)
        torch.nn.init.zeros_(self.score.weight)
        self.shared = [policy]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        (policy,) = self.shared
        backbone = policy.get_base_model().base_model  # e.g. GPT2Model under GPT2LMHeadModel, the adapters inside
        with adapter_active(policy, VALUE_ADAPTER):
            hidden = backbone(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask)
            ).last_hidden_state
        return self.score(hidden.to(self.score.weight.dtype)).squeeze(-1).float()


def load_value_model(sft_path: Path, reward: Reward) -> ValueModel:
    """A learned reward model starts the value model (Ouyang et al. 2022); else SFT with a zero scalar head."""
    from transformers import AutoModelForSequenceClassification

    if reward.model_path is not None:
        scorer = load_model(reward.model_path, AutoModelForSequenceClassification, merge=True)
        return ValueModel(disable_dropout(scorer))
    classifier = load_model(sft_path, AutoModelForSequenceClassification, merge=True, num_labels=1)
    torch.nn.init.zeros_(classifier.score.weight)
    if getattr(classifier.score, "bias", None) is not None:
        torch.nn.init.zeros_(classifier.score.bias)
    return ValueModel(disable_dropout(classifier))


@dataclass
class Models:
    """What PPO holds: the policy it trains, the frozen SFT reference, the value model (None: REINFORCE++)."""

    policy: Any
    reference: Any | None  # None with LoRA: the reference is the policy with its adapters off (see `as_reference`)
    value_model: Any | None


def load_models(sft_path: Path, reward: Reward, critic: bool, peft: PeftSettings | None = None) -> Models:
    """Full fine-tuning: the policy, a frozen copy of it as the reference, and a value model of its own (three copies
    of the weights). LoRA: one copy of the SFT weights with a policy adapter, the value adapter (with a critic) beside
    it; the reference is that copy with the adapters off."""
    policy = disable_dropout(load_model(sft_path, merge=True, **(peft.model_kwargs() if peft else {})))
    if peft is None:
        reference = disable_dropout(load_model(sft_path, merge=True)).eval().requires_grad_(False)
        return Models(policy, reference, load_value_model(sft_path, reward) if critic else None)
    from peft import get_peft_model, prepare_model_for_kbit_training

    if peft.quantization is not None:  # QLoRA: norms in fp32, the 4-bit weights frozen (Dettmers et al. 2023)
        policy = prepare_model_for_kbit_training(policy, use_gradient_checkpointing=False)
    lora = peft.lora_config()
    policy = get_peft_model(policy, lora)
    if critic:
        policy.add_adapter(VALUE_ADAPTER, lora)
        policy.set_requires_grad(VALUE_ADAPTER, True)  # added adapters start frozen; this one trains too
    return Models(disable_dropout(policy), None, AdapterValueModel(policy) if critic else None)


def check_reference(config: PPOConfig, peft: PeftSettings | None) -> None:
    """An EMA reference needs weights of its own to move; with LoRA the reference is the SFT weights themselves
    (the policy with its adapter off), which the policy stands on. (An EMA of the adapter's two factors would
    not be an EMA of their product, so no second adapter can stand in for it.)"""
    if config.ref_ema is not None and peft is not None:
        raise HarnessError(
            f"algorithm.trainer.ref_ema={config.ref_ema}: an EMA reference needs its own copy of the weights, and "
            "with peft=lora the reference is the policy's frozen base; use peft=none or ref_ema=null"
        )


@contextlib.contextmanager
def as_reference(models: Models, policy: Any) -> typing.Iterator[Any]:
    """The frozen SFT policy to score with: the reference copy, or (LoRA) `policy` with its adapters off."""
    if models.reference is not None:
        yield models.reference
    else:
        with adapter_disabled(policy):
            yield policy


@torch.no_grad()
def update_reference(reference: torch.nn.Module, policy: torch.nn.Module, ref_ema: float) -> None:
    """The EMA reference of Xu et al. 2024: every weight moves (1 - ref_ema) of the way to the policy's,
    ref <- ref_ema ref + (1 - ref_ema) policy, once per update (after its PPO epochs, as ReaLHF's `ref_ema_eta`
    hook after each actor training step). Parameters only: the buffers (GPT-2's causal mask) are constants."""
    for ref, new in zip(reference.parameters(), policy.parameters(), strict=True):
        if ref.shape != new.shape:
            raise ValueError(f"reference weight {tuple(ref.shape)} against policy weight {tuple(new.shape)}")
        ref.lerp_(new, 1.0 - ref_ema)  # ref + (1 - ref_ema) (new - ref)


def trained_weights(model: Any) -> dict[str, torch.Tensor]:
    """What a LoRA checkpoint holds of the policy: the adapters (the frozen weights are the SFT stage's)."""
    return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def response_values(
    value_model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, context: int
) -> torch.Tensor:
    """V(state before each response token): the values at positions context-1 ... end-1."""
    return value_model(input_ids, attention_mask)[:, context - 1 : -1]


def logprobs_of(
    model: Any,
    temperature: float,
    with_entropy: bool,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    responses: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """Logprobs of the response tokens (queries fill the rest of `input_ids`), and the entropy at each token
    when `with_entropy` (the policy's; the reference's would be thrown away)."""
    logits = response_logits(model, input_ids, attention_mask, input_ids.shape[1] - responses.shape[1])
    logprobs = logprobs_from_logits(logits, responses, temperature)
    return (logprobs, entropy_from_logits(logits, temperature)) if with_entropy else (logprobs,)


def values_of(
    value_model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, responses: torch.Tensor
) -> tuple[torch.Tensor]:
    """V(state before each response token)."""
    return (response_values(value_model, input_ids, attention_mask, input_ids.shape[1] - responses.shape[1]),)


def cut_to_group(
    rows: torch.Tensor, mask: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """The group's longest response (`width`), and its rows of the query + response tensors cut to it."""
    width = int(mask[rows].sum(1).max())
    end = input_ids.shape[1] - mask.shape[1] + width
    return width, input_ids[rows, :end], attention_mask[rows, :end]


def by_length(
    groups: Sequence[Sequence[int]],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor,
    compute: typing.Callable[..., tuple[torch.Tensor, ...]],
) -> list[torch.Tensor]:
    """Per-token results for a batch, computed group by group (harness.batching.length_groups) with each group
    cut to its longest response: `compute(input_ids, attention_mask, responses)` returns [rows, width] tensors,
    put back into [batch, response width] ones (zero past each row's end, where `mask` is 0)."""
    outputs: list[torch.Tensor] = []
    for group in groups:
        rows = torch.tensor(group, device=mask.device)
        width, ids, attention = cut_to_group(rows, mask, input_ids, attention_mask)
        parts = compute(ids, attention, responses[rows, :width])
        if not outputs:
            outputs = [torch.zeros(mask.shape, dtype=part.dtype, device=part.device) for part in parts]
        for output, part in zip(outputs, parts, strict=True):
            output[rows, :width] = part
    return outputs
