"""PPO's training loop, beside the algorithm box of Ziegler et al. 2019 and Ouyang et al. 2022, with the
implementation details of Huang et al. 2024 ("The N+ implementation details of RLHF with PPO"):

    set up      policy, frozen reference and value model from SFT; AdamW with a linear decay; seeded RNGs
    for each update:
      1. rollout     sample a response per prompt from the current policy; cut it after its first EOS
      2. score       logprobs of policy and reference, values (with a critic), the reward's score at EOS
      3. rewards     -beta KL_t at every token, plus the score at the last one
      4. advantages  GAE with a critic, else REINFORCE++'s rewards to go; whitened
      5. update      ppo_epochs passes of clipped PPO steps over shuffled minibatches
      6. log         reward, KL, entropy, losses; a checkpoint every save_every updates; snapshots
    7. save the policy

`train_ppo` is that box; `Learner` (what the loop holds from one update to the next) does each step, on the
`Rollout` of step 1, the `Experience` of step 2 and the `Targets` of steps 3 and 4. `accelerate` wraps the models
and the optimizer, so the same loop runs on several GPUs under `accelerate launch`; on the testbed it runs
single-process on CPU.
"""

from __future__ import annotations

import contextlib
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from harness.api import (
    Reward,
    RewardFn,
    TrainingStage,
    length_groups,
    progress_steps,
    prompt_room,
    truncate_history,
    warn_long_prompts,
)
from plugins.algorithms.ppo.checkpoint import Trainables, load_state, restore_state, save_state
from plugins.algorithms.ppo.config import PPOConfig
from plugins.algorithms.ppo.maths import (
    KLController,
    advantages_and_returns,
    apply_missing_eos_penalty,
    explained_variance,
    kl_estimate,
    masked_mean,
    masked_whiten,
    per_token_rewards,
    policy_loss,
    truncate_after_eos,
    value_loss,
)
from plugins.algorithms.ppo.models import (
    Models,
    as_reference,
    by_length,
    check_reference,
    cut_to_group,
    load_models,
    logprobs_of,
    update_reference,
    values_of,
)
from plugins.algorithms.ppo.rollout import prompt_batches, sample_responses

# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------


def train_ppo(
    config: PPOConfig,
    stage: TrainingStage,
    *,
    reward: Reward,
    prompts: Sequence[str],
    recorder: Any,
    device: str,
    seed: int,
    gold: RewardFn | None = None,
) -> dict[str, Any]:
    """Train a policy from the stage's start (SFT) against `reward`; save it in the stage; return its metrics.

    `stage` (harness.api.TrainingStage; `TrainingStage.outside_a_run` without a Run): where to write, the SFT
    policy, LoRA (`stage.peft`: train adapters, the policy saved as one) and the snapshots to keep along the updates.
    `recorder`: where each update's row goes (`stage.recorder("train")` in a Run).
    `gold`, when given (a task with an exact reward, trained against a learned one), is only watched: each
    update also logs the rollouts' gold score, so over-optimisation shows as proxy up, gold down.
    """
    started = time.perf_counter()
    ppo = set_up(config, stage, reward, prompts, device, seed)
    processes = ppo.accelerator.num_processes
    batches = prompt_batches(prompts, config.batch_size, seed + ppo.accelerator.process_index)
    state_dir = stage.out_dir / "checkpoints" / f"ppo-rank{ppo.accelerator.process_index}"
    parts = ppo.trainables()
    done = resume(ppo, parts, state_dir, batches, recorder)  # a killed build of this stage: go on where it stopped
    resumed_from = done.update
    snapshot_at = stage.snapshot_steps(ppo.num_updates)
    progress_steps("train", total=ppo.num_updates, done=resumed_from, unit="updates")  # a sweep's view counts them
    for update in range(resumed_from + 1, ppo.num_updates + 1):
        # 1. Rollout: sample a response per prompt from the current policy, cut after its first EOS (Huang 2024)
        rollout = ppo.rollout(next(batches))

        # 2. Logprobs of policy and reference, values (with a critic), and the reward's score at the EOS token
        experience = ppo.score(rollout, reward)

        # 3. Per-token rewards: -beta KL_t at every token, plus the score at the last one (Ziegler et al. 2019, eq. 2)
        # 4. Advantages and returns: GAE (Schulman et al. 2016, eq. 16) with a critic, else REINFORCE++'s rewards
        # to go (Hu 2025); whitened unless normalize_advantages is off (Xu et al. 2024)
        targets = ppo.targets(experience)

        # 5. PPO update: ppo_epochs passes over shuffled minibatches (Schulman et al. 2017, eq. 7)
        losses = ppo.update(experience, targets)
        lr = ppo.scheduler.get_last_lr()[0]  # the rate this update used
        ppo.scheduler.step()  # linear decay to 0 (Huang et al. 2024)
        if config.ref_ema is not None:  # the reference follows the policy (Xu et al. 2024); the next KL is to it
            update_reference(ppo.models.reference, ppo.unwrapped_policy, config.ref_ema)

        # 6. Log: what the objective is doing (reward, KL, entropy) and how the optimisation behaves
        done.episodes += config.batch_size * processes
        done.tokens_trained += int(ppo.accelerator.gather(experience.mask.sum()).sum())
        row = logged_row(ppo, experience, targets, losses, gold, lr=lr, episodes=done.episodes, started=started)
        done.history.append(row)
        if ppo.accelerator.is_main_process:
            recorder.record(row, step=update)
        ppo.kl_controller.update(row["objective/kl"], config.batch_size * processes)  # (Ziegler et al. 2019)
        if update % config.save_every == 0 and update < ppo.num_updates:
            save_state(state_dir, update, parts, done.episodes, done.tokens_trained, done.history)
        if update in snapshot_at and ppo.accelerator.is_main_process:  # the policy along training, as saved at the end
            ppo.save(partial(stage.save_snapshot, step=update, total_steps=ppo.num_updates))

    # 7. Save the policy (safetensors) with its tokenizer; report the run
    ppo.accelerator.wait_for_everyone()
    if ppo.accelerator.is_main_process:  # with LoRA the policy's adapter; the value adapter goes, as a value model does
        ppo.save(stage.save_policy)
    return finals(ppo, done, seconds=time.perf_counter() - started, resumed_from=resumed_from, gold=gold)


# ---------------------------------------------------------------------------------------------------------
# What one update hands the next step
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Rollout:
    """Step 1: the prompts and their sampled responses, and the masks every later step reads."""

    prompts: list[str]
    context: int  # width of the (left-padded) queries: the responses start there
    responses: torch.Tensor  # cut after the first EOS: pad_id after it
    mask: torch.Tensor  # the response tokens up to and including the first EOS
    contains_eos: torch.Tensor
    input_ids: torch.Tensor  # queries, then responses
    attention_mask: torch.Tensor
    groups: list[list[int]]  # rows of similar length, run together (harness.batching)

    def by_length(self, compute: typing.Callable[..., tuple[torch.Tensor, ...]]) -> list[torch.Tensor]:
        """`compute` on every row, group by group, each group cut to its longest response (models.by_length)."""
        return by_length(self.groups, self.input_ids, self.attention_mask, self.responses, self.mask, compute)


@dataclass
class Experience(Rollout):
    """Step 2: the rollout, and what the policy, the reference, the critic and the reward make of it."""

    logprobs: torch.Tensor  # log pi_old(token): the policy's at rollout time, as the update's ratio divides by
    entropy: torch.Tensor  # per token, over the batch
    ref_logprobs: torch.Tensor
    values: torch.Tensor | None  # V(state before each token); None: no critic (REINFORCE++)
    completions: list[str]
    raw_scores: torch.Tensor  # the reward's
    scores: torch.Tensor  # less the missing-EOS penalty


@dataclass
class Targets:
    """Steps 3 and 4: the per-token rewards and what the update fits, all zero on padding."""

    kl: torch.Tensor  # per-token estimate of KL(policy || reference)
    non_score_rewards: torch.Tensor  # -beta KL_t
    advantages: torch.Tensor
    returns: torch.Tensor  # the critic's targets


@dataclass
class Progress:
    """The loop's counters, as a checkpoint carries them."""

    update: int = 0  # the last update done
    episodes: int = 0
    tokens_trained: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
# Set-up, and the steps
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Learner:
    """What the loop holds from one update to the next, and each of its steps."""

    config: PPOConfig
    accelerator: Any
    tokenizer: Any  # left padding (queries flush against responses) and truncation while training
    padding_side: str  # the tokenizer's own: put back whenever it is saved
    eos_id: int
    pad_id: int
    models: Models  # as loaded: the reference is the KL penalty's
    policy: Any  # as accelerate wraps it
    value_model: Any | None  # likewise; None: no critic (REINFORCE++)
    unwrapped_policy: Any
    optimizer: Any
    scheduler: Any
    kl_controller: KLController
    generator: torch.Generator  # the sampling RNG
    num_updates: int
    start_weights: list[tuple[torch.Tensor, torch.Tensor]]  # what training moves, and where it started
    parameters: dict[str, int]  # trainable and total parameters, as the stage reports them
    room: int | None = None  # prompt tokens that fit beside a response (None: the model states no limit)

    @property
    def critic(self) -> bool:
        return self.value_model is not None

    @property
    def trained(self) -> tuple[Any, ...]:
        """The models the optimizer steps."""
        return (self.policy, self.value_model) if self.critic else (self.policy,)

    @property
    def logged_losses(self) -> tuple[str, ...]:
        return ("pg_loss", "approx_kl", "clipfrac", *(("v_loss", "vf_clip") if self.critic else ()))

    def trainables(self) -> Trainables:
        """What a checkpoint carries besides the counters."""
        return Trainables(
            self.unwrapped_policy,
            self.accelerator.unwrap_model(self.value_model) if self.critic else None,
            self.optimizer,
            self.scheduler,
            self.kl_controller,
            self.generator,
            self.models.reference if self.config.ref_ema is not None else None,
        )

    # 1. Rollout --------------------------------------------------------------------------------------------
    def rollout(self, prompts: list[str]) -> Rollout:
        """A response per prompt, sampled from the current policy and truncated after its first EOS (Huang et al.
        2024); the padding after it is masked from every loss."""
        config = self.config
        encoded = self.tokenizer(
            prompts, return_tensors="pt", padding=True, truncation=self.room is not None, max_length=self.room
        )
        encoded = encoded.to(self.accelerator.device)
        queries, query_mask = encoded["input_ids"], encoded["attention_mask"]
        context = queries.shape[1]
        self.unwrapped_policy.eval()
        raw, _ = sample_responses(
            self.unwrapped_policy,
            queries,
            query_mask,
            config.response_length,
            config.temperature,
            self.eos_id,
            self.pad_id,
            self.generator,
        )
        responses, mask, contains_eos = truncate_after_eos(raw, self.eos_id, self.pad_id)
        input_ids = torch.cat([queries, responses], dim=1)
        attention_mask = torch.cat([query_mask.bool(), mask], dim=1).long()
        # Rows go through in groups of similar length (harness.batching): the same numbers on less padding.
        groups = length_groups(mask.sum(1), fixed=context)
        return Rollout(prompts, context, responses, mask, contains_eos, input_ids, attention_mask, groups)

    # 2. Score ----------------------------------------------------------------------------------------------
    def score(self, rollout: Rollout, reward: Reward) -> Experience:
        """Logprobs of policy and reference, values (with a critic), and the reward's score of each response, less
        the missing-EOS penalty."""
        temperature = self.config.temperature
        with torch.no_grad():
            for model in self.trained:
                model.eval()
            logprobs, entropies = rollout.by_length(partial(logprobs_of, self.policy, temperature, True))
            entropy = masked_mean(entropies, rollout.mask)  # per token, exact
            with as_reference(self.models, self.unwrapped_policy) as reference:
                (ref_logprobs,) = rollout.by_length(partial(logprobs_of, reference, temperature, False))
            values = rollout.by_length(partial(values_of, self.value_model))[0] if self.critic else None
        completions = self.tokenizer.batch_decode(rollout.responses, skip_special_tokens=True)
        raw_scores = torch.tensor(
            reward.fn(rollout.prompts, [c.strip() for c in completions]),
            dtype=torch.float,
            device=self.accelerator.device,
        )
        scores = apply_missing_eos_penalty(raw_scores, rollout.contains_eos, self.config.missing_eos_penalty)
        return Experience(
            **vars(rollout),
            logprobs=logprobs,
            entropy=entropy,
            ref_logprobs=ref_logprobs,
            values=values,
            completions=completions,
            raw_scores=raw_scores,
            scores=scores,
        )

    # 3. and 4. Rewards, advantages and returns -------------------------------------------------------------
    def targets(self, experience: Experience) -> Targets:
        """r_t = -beta KL_t, plus the score at the last token (Ziegler et al. 2019, eq. 2); then the advantages and
        returns (maths.advantages_and_returns: GAE, or REINFORCE++ whitened over every process's tokens)."""
        config, mask = self.config, experience.mask
        kl = kl_estimate(experience.logprobs, experience.ref_logprobs, config.kl_estimator) * mask
        rewards, non_score_rewards = per_token_rewards(experience.scores, kl, mask, self.kl_controller.value)
        if config.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False) * mask
        advantages, returns = advantages_and_returns(
            rewards, experience.values, mask, config, partial(self.accelerator.reduce, reduction="sum")
        )
        return Targets(kl, non_score_rewards, advantages, returns)

    # 5. Update ---------------------------------------------------------------------------------------------
    def update(self, experience: Experience, targets: Targets) -> dict[str, float]:
        """ppo_epochs passes over the rollout in shuffled minibatches, an optimizer step each (Schulman et al.
        2017); returns the mean of each loss and clip fraction over the minibatches."""
        config = self.config
        for model in self.trained:
            model.train()
        stats: dict[str, list[float]] = {key: [] for key in self.logged_losses}
        minibatch_size = config.batch_size // config.num_minibatches
        for _ in range(config.ppo_epochs):
            order = torch.randperm(config.batch_size, device=self.accelerator.device)
            for start in range(0, config.batch_size, minibatch_size):
                totals = self.minibatch_step(experience, targets, order[start : start + minibatch_size])
                for key, value in zip(stats, totals.tolist(), strict=True):
                    stats[key].append(value)
        return {key: sum(values) / len(values) for key, values in stats.items()}

    def minibatch_step(self, experience: Experience, targets: Targets, index: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the rows `index`. The minibatch's loss goes in parts of similar length
        (harness.batching), each normalised by the whole minibatch's token count, so the accumulated gradient is the
        minibatch's own. Returns the sums of the logged losses over the parts."""
        mask = experience.mask
        count = mask[index].sum()
        pieces = [index[group] for group in length_groups(mask[index].sum(1), fixed=experience.context)]
        totals = torch.zeros(len(self.logged_losses))
        self.optimizer.zero_grad(set_to_none=True)
        for number, rows in enumerate(pieces):
            # several processes: gradients are averaged once, after the minibatch's last part. DDP settles in the
            # forward pass whether the backward syncs, so the forward runs under no_sync too.
            with no_sync(self.accelerator, self.trained, number < len(pieces) - 1):
                loss, logged = self.loss(experience, targets, rows, count)
                self.accelerator.backward(loss)
                totals += torch.stack(logged).detach().cpu()
        parameters = [p for model in self.trained for p in model.parameters()]
        self.accelerator.clip_grad_norm_(parameters, self.config.max_grad_norm)
        self.optimizer.step()
        return totals

    def loss(
        self, experience: Experience, targets: Targets, rows: torch.Tensor, count: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The clipped policy loss of `rows` (Schulman et al. 2017, eq. 7), plus vf_coef times the clipped value loss
        (Huang et al. 2022) with a critic; and the terms logged (`logged_losses`)."""
        config = self.config
        width, ids, attention = cut_to_group(rows, experience.mask, experience.input_ids, experience.attention_mask)
        responses, mask, old_logprobs, advantages = (
            t[rows, :width] for t in (experience.responses, experience.mask, experience.logprobs, targets.advantages)
        )
        (logprobs,) = logprobs_of(self.policy, config.temperature, False, ids, attention, responses)
        pg_loss, clipfrac, approx_kl = policy_loss(logprobs, old_logprobs, advantages, mask, config.clip_coef, count)
        if not self.critic:  # REINFORCE++: that is all (Hu 2025)
            return pg_loss, [pg_loss, approx_kl, clipfrac]
        old_values, returns = experience.values[rows, :width], targets.returns[rows, :width]
        (values,) = values_of(self.value_model, ids, attention, responses)
        v_loss, vf_clipfrac = value_loss(values, old_values, returns, mask, config.cliprange_value, count)
        return pg_loss + config.vf_coef * v_loss, [pg_loss, approx_kl, clipfrac, v_loss, vf_clipfrac]

    # 6. and 7. Save ----------------------------------------------------------------------------------------
    def save(self, save: typing.Callable[[Any, Any], Any]) -> None:
        """`save(policy, tokenizer)` (a snapshot, or the trained policy) with the tokenizer as it came: the left
        padding is the rollout's own."""
        self.tokenizer.padding_side = self.padding_side
        save(self.unwrapped_policy, self.tokenizer)
        self.tokenizer.padding_side = "left"


def set_up(
    config: PPOConfig, stage: TrainingStage, reward: Reward, prompts: Sequence[str], device: str, seed: int
) -> Learner:
    """The seeded RNGs, the tokenizer, the models (policy, reference, value model) from SFT, AdamW and its linear
    decay, wrapped by accelerate: in this order, which fixes every random draw of the run."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer

    accelerator = Accelerator(cpu=device == "cpu")
    set_seed(seed + accelerator.process_index)  # each process draws its own prompts and samples
    generator = torch.Generator(device=accelerator.device).manual_seed(seed + accelerator.process_index)

    tokenizer = AutoTokenizer.from_pretrained(stage.start.path)
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # queries flush against responses
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    check_reference(config, stage.peft)
    # REINFORCE++ has no critic (Hu 2025): no value model is loaded, run or trained
    models = load_models(stage.start.path, reward, config.advantage_estimator == "gae", stage.peft)
    # what training moves (all of it, or the adapters): where it started, to report how much of it moved
    start_weights = [(p, p.detach().clone()) for p in models.policy.parameters() if p.requires_grad]
    trained = [model for model in (models.policy, models.value_model) if model is not None]

    # batch_size prompts per process and update: several processes share the episodes, not multiply them
    num_updates = config.total_episodes // (config.batch_size * accelerator.num_processes)
    optimizer = torch.optim.AdamW(
        [p for model in trained for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )
    # Linear decay to 0 over the updates (Huang et al. 2024); stepped once per update.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 1.0 - update / num_updates)
    *wrapped, optimizer = accelerator.prepare(*trained, optimizer)
    if models.reference is not None:
        models.reference = models.reference.to(accelerator.device)
    ppo = Learner(
        config=config,
        accelerator=accelerator,
        tokenizer=tokenizer,
        padding_side=padding_side,
        eos_id=eos_id,
        pad_id=pad_id,
        models=models,
        policy=wrapped[0],
        value_model=wrapped[1] if len(wrapped) > 1 else None,
        unwrapped_policy=accelerator.unwrap_model(wrapped[0]),
        optimizer=optimizer,
        scheduler=scheduler,
        kl_controller=KLController(config.kl_coef, config.adaptive_kl, config.target_kl, config.kl_horizon),
        generator=generator,
        num_updates=num_updates,
        start_weights=start_weights,
        parameters=stage.parameters(*trained),
    )

    # prompts too long for the context beside a response keep their last tokens (one warning for all of them)
    ppo.room = prompt_room(ppo.unwrapped_policy, config.response_length, "algorithm.trainer.response_length")
    tokenizer.truncation_side = "left"
    warn_long_prompts(
        "ppo", tokenizer, prompts, ppo.room, config.response_length, "algorithm.trainer.response_length",
        f"training on their last {ppo.room} tokens",
    )  # fmt: skip
    return ppo


def resume(
    ppo: Learner, parts: Trainables, state_dir: Path, batches: typing.Iterator[list[str]], recorder: Any
) -> Progress:
    """The counters to go on from: those of the last checkpoint a killed build of this stage left (its weights,
    optimizer, RNGs and KL beta put back into `parts`, its prompt batches skipped), else none."""
    state = load_state(state_dir)
    if state is None:
        return Progress()
    done = Progress(*restore_state(state, state_dir, parts))
    for _ in range(done.update):  # the prompt batches the killed run already used
        next(batches)
    if ppo.accelerator.is_main_process:
        recorder.first.update(truncate_history(recorder.history_path, done.update))
    return done


@contextlib.contextmanager
def no_sync(accelerator: Any, models: Sequence[Any], skip: bool) -> typing.Iterator[None]:
    """Gradient accumulation across several processes: no all-reduce in this backward when `skip`."""
    with contextlib.ExitStack() as stack:
        if skip:
            for model in models:
                stack.enter_context(accelerator.no_sync(model))
        yield


# ---------------------------------------------------------------------------------------------------------
# What the loop reports
# ---------------------------------------------------------------------------------------------------------


def logged_row(
    ppo: Learner,
    experience: Experience,
    targets: Targets,
    losses: dict[str, float],
    gold: RewardFn | None,
    *,
    lr: float,
    episodes: int,
    started: float,
) -> dict[str, float]:
    """Step 6's row (CleanRL's namespaces): what the objective is doing (`objective/`: score, KL, entropy; the gold
    score when watched), how the optimisation behaves (`policy/`, `losses/`, `val/`: the critic's, none for
    REINFORCE++), and the schedule. Each the mean over the processes."""
    sequence_kl = targets.kl.sum(1)
    completions = [c.strip() for c in experience.completions]
    row = {
        "objective/kl": sequence_kl.mean(),
        "objective/entropy": experience.entropy,
        "objective/non_score_reward": targets.non_score_rewards.sum(1).mean(),
        "objective/score": experience.raw_scores.mean(),
        **(
            {"objective/gold_score": sum(gold(experience.prompts, completions)) / len(completions)}
            if gold is not None
            else {}
        ),
        "objective/rlhf_reward": (experience.scores - ppo.kl_controller.value * sequence_kl).mean(),
        "objective/missing_eos": (~experience.contains_eos).float().mean(),
        "objective/response_length": experience.mask.float().sum(1).mean(),
        "policy/approx_kl": losses["approx_kl"],
        "policy/clipfrac": losses["clipfrac"],
        "losses/pg_loss": losses["pg_loss"],
        **(
            {
                "losses/v_loss": losses["v_loss"],
                "val/explained_variance": explained_variance(experience.values, targets.returns, experience.mask),
                "val/clipfrac": losses["vf_clip"],
            }
            if ppo.critic
            else {}
        ),
        "kl_coef": ppo.kl_controller.value,
        "lr": lr,
        "episodes": episodes,
        "eps": episodes / (time.perf_counter() - started),
    }
    device = ppo.accelerator.device
    return {
        key: float(ppo.accelerator.reduce(torch.as_tensor(value, device=device).float(), "mean"))
        for key, value in row.items()
    }


def finals(ppo: Learner, done: Progress, *, seconds: float, resumed_from: int, gold: RewardFn | None) -> dict[str, Any]:
    """The stage's metrics: the last tenth of the updates' means (less noisy than the last row), the counts, the
    cost, and how much of what training moves moved."""
    changed = sum(not start.equal(p.detach().cpu()) for p, start in ppo.start_weights)
    tail = done.history[-max(1, len(done.history) // 10) :]

    def tail_mean(key: str) -> float:
        return sum(row[key] for row in tail) / len(tail)

    gold_finals = {"gold_score": tail_mean("objective/gold_score")} if gold is not None else {}
    return {
        **gold_finals,
        "score": tail_mean("objective/score"),
        "first_score": done.history[0]["objective/score"],
        "kl": tail_mean("objective/kl"),
        "rlhf_reward": tail_mean("objective/rlhf_reward"),
        "entropy": tail_mean("objective/entropy"),
        "kl_coef": ppo.kl_controller.value,
        "updates": ppo.num_updates,
        "episodes": done.episodes,
        "episodes_per_second": done.episodes / seconds,
        "train_runtime_s": seconds,
        "tokens_trained": done.tokens_trained,
        "params_changed": changed / len(ppo.start_weights),
        **ppo.parameters,
        **({"resumed_from_step": resumed_from} if resumed_from else {}),
    }
