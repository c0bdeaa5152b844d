"""Guards against input that would otherwise end in a library's traceback or in silent garbage: prompts longer
than the model's context, rewards that are NaN, and a training loss that has gone NaN."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from harness.errors import HarnessError

log = logging.getLogger(__name__)


# -- prompts and the model's context ----------------------------------------------------------------------
def context_size(model: Any) -> int | None:
    """The most positions `model` takes (GPT-2's `n_positions`, most others' `max_position_embeddings`)."""
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def prompt_room(model: Any, new_tokens: int, setting: str = "generation.max_new_tokens") -> int | None:
    """How many prompt tokens fit beside `new_tokens` generated ones (None: the model states no limit)."""
    context = context_size(model)
    if context is None:
        return None
    if new_tokens >= context:
        raise HarnessError(
            f"{setting}={new_tokens}: leaves no room for a prompt in the model's context of {context} tokens; "
            f"expected at most {context - 1}"
        )
    return context - new_tokens


def warn_long_prompts(
    what: str, tokenizer: Any, prompts: Sequence[str], room: int | None, new_tokens: int, setting: str, action: str
) -> list[int]:
    """The indexes of the prompts longer than `room` tokens, with one warning that says what is done with them.
    `setting` names what takes the other `new_tokens` of the context (`generation.max_new_tokens`)."""
    if room is None or not prompts:
        return []
    lengths = [len(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    longer = [i for i, length in enumerate(lengths) if length > room]
    if longer:
        longest = max(longer, key=lengths.__getitem__)
        log.warning(
            "%s: %d of %d prompts do not fit the model's context of %d tokens beside %s=%d (the longest: prompt %d, "
            "%d tokens); %s",
            what, len(longer), len(prompts), room + new_tokens, setting, new_tokens, longest, lengths[longest], action,
        )
    return longer


def keep_last(ids: Sequence[int], limit: int, special_ids: Collection[int]) -> list[int]:
    """`ids` cut from the left to `limit` tokens, keeping a leading special token (`<bos>`) in front."""
    if len(ids) <= limit:
        return list(ids)
    if ids[0] in special_ids:
        return [ids[0], *ids[len(ids) - limit + 1 :]]
    return list(ids[len(ids) - limit :])


# -- rewards ------------------------------------------------------------------------------------------------
def check_rewards(name: str, scores: Sequence[float]) -> list[float]:
    """The scores, or a one-line error naming the reward and how many of the batch were NaN or infinite.

    A NaN reward turns every advantage and loss it touches into NaN; better to stop at the first one.
    """
    scores = [float(score) for score in scores]
    nan = [i for i, score in enumerate(scores) if math.isnan(score)]
    inf = [i for i, score in enumerate(scores) if math.isinf(score)]
    if nan or inf:
        counts = " and ".join(part for part in (nan and f"NaN for {len(nan)}", inf and f"inf for {len(inf)}") if part)
        raise HarnessError(
            f"reward {name!r} returned {counts} of {len(scores)} completions in a batch (first: completion "
            f"{min(nan + inf)}); expected a finite score for each"
        )
    return scores


def finite_reward(name: str, fn: Callable[[Sequence[str], Sequence[str]], list[float]]) -> Callable[..., list[float]]:
    """`fn` with its scores checked by `check_rewards`."""

    def reward(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        return check_rewards(name, fn(prompts, completions))

    return reward


# -- training ----------------------------------------------------------------------------------------------
class StopOnNonFiniteLoss(TrainerCallback):
    """Stops a TRL/transformers trainer at the first logged loss or gradient norm that is NaN or infinite; `check()`
    then raises a one-line `HarnessError`.

    Raised from the stage's build, the error leaves the stage never marked complete, and no later stage starts
    from diverged weights. The step that showed the divergence is not saved as a checkpoint. transformers replaces
    a NaN loss in its logs by the window's mean (`logging_nan_inf_filter`), so the gradient norm, which it logs as
    is, is what usually shows it; under fp16 a non-finite gradient norm is the loss scaler's routine overflow, so
    there only the loss counts.
    """

    def __init__(self, out_dir: Path) -> None:
        self.stage = out_dir.parent.name  # stages live in <cache_dir>/<stage>/<key>/
        self.last_finite_step = 0
        self.error: HarnessError | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self.last_finite_step = state.global_step  # a resumed run starts from a checkpoint it trusted

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **_: Any) -> None:
        if self.error is not None:
            return
        watched = [key for key in logs or {} if key.endswith("loss") or (key == "grad_norm" and not args.fp16)]
        bad = {key: logs[key] for key in watched if _is_number(logs[key]) and not math.isfinite(float(logs[key]))}
        if not bad:
            self.last_finite_step = state.global_step
            return
        key, value = next(iter(bad.items()))
        checkpoint = _last_checkpoint(Path(args.output_dir), self.last_finite_step)
        kept = f"last checkpoint before it: {checkpoint}" if checkpoint else "no checkpoint was saved before it"
        self.error = HarnessError(
            f"stage {self.stage}: training diverged at step {state.global_step} ({key}={value}); stopped and not "
            f"marked complete; {kept}; try a lower learning rate than {args.learning_rate:g}"
        )
        # Stop here, saving nothing more. Raising from a callback would leave the trainer's progress bar open, to
        # be redrawn after the error line; stopped, it winds down as usual and `check()` raises.
        control.should_training_stop = True
        control.should_save = False
        control.should_evaluate = False

    def check(self) -> None:
        """Raise the divergence, if there was one; call it when `train()` returns."""
        if self.error is not None:
            raise self.error


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _last_checkpoint(folder: Path, step: int) -> Path | None:
    """The newest readable checkpoint in `folder` saved at or before `step`."""
    saved = saved_checkpoints(folder)
    before = [n for n in saved if n <= step]
    return saved[max(before)] if before else None


CHECKPOINT_PREFIX = "checkpoint-"  # a transformers Trainer names its checkpoints `checkpoint-<step>`


def saved_checkpoints(folder: Path) -> dict[int, Path]:
    """Step -> folder of every whole checkpoint a trainer left in `folder`. Whole: its trainer_state.json, which
    transformers writes last but not atomically, parses (a kill mid-write leaves it cut off)."""
    if not folder.is_dir():
        return {}
    saved = {}
    for path in folder.glob(CHECKPOINT_PREFIX + "*"):
        step = path.name.removeprefix(CHECKPOINT_PREFIX)
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        if step.isdigit():
            saved[int(step)] = path
    return saved
