"""`eval=ood`: the policy on review openings that no alignment stage saw (Kirk et al. 2024, sec. 4).

The task holds a class of prompts out of every split alignment trains on and ships them as `ood_prompts` (the
testbed with `task.ood=first_person`: openings in the first person, absent from the SFT demonstrations, the RL
prompts, the preference pairs and so the reward model). The suite samples the policy there with the evaluation's
own settings (its procedure for best-of-n), and reports the gold reward and grammaticality out of distribution beside
the in-distribution ones of the shared samples: `reward_gap` = in-distribution minus out-of-distribution gold reward,
Kirk et al.'s generalisation gap (smaller: the policy's gains carry over to inputs it was not tuned on).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence

from harness.api import EvalContext, HarnessError

log = logging.getLogger(__name__)


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


class OODEval:
    def __init__(self, name: str = "ood", split: str = "ood_prompts", num_prompts: int | None = None) -> None:
        self.name = name
        self.split = split  # the task's split of held-out prompts
        self.num_prompts = num_prompts  # its first N prompts; None: all

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        if context.gold is None:
            log.warning("eval %s: this task has no gold reward; eval/%s is skipped", self.name, self.name)
            return {}
        if context.run is None:
            raise HarnessError(f"eval {self.name}: needs the job's run to read the task's {self.split} split")
        prompts = self._prompts(context)
        completions = self._sample(context, prompts)
        gold = context.gold
        reward, reward_stderr = mean_and_stderr(gold.reward(prompts, completions))
        grammatical = statistics.fmean(float(g) for g in gold.grammatical(prompts, completions))
        # in distribution: the shared samples of the evaluation prompts, judged the same way (eval/gold's values)
        id_reward = statistics.fmean(gold.reward(context.prompts, context.completions))
        id_grammatical = statistics.fmean(float(g) for g in gold.grammatical(context.prompts, context.completions))
        return {
            "reward": reward,
            "reward_stderr": reward_stderr,
            "grammatical": grammatical,
            "reward_gap": id_reward - reward,
            "grammatical_gap": id_grammatical - grammatical,
            "prompts": float(len(prompts)),
        }

    def _prompts(self, context: EvalContext) -> list[str]:
        assert context.run is not None
        try:
            split = context.run.load_split(self.split)  # rendered as the policy reads prompts (chat template)
        except HarnessError as error:
            hint = "on the testbed, hold a class of openings out with task.ood=<rule> (e.g. first_person)"
            raise HarnessError(f"eval {self.name}: {error}; {hint}") from None
        prompts = list(split["prompt"])
        return prompts[: self.num_prompts] if self.num_prompts is not None else prompts

    @staticmethod
    def _sample(context: EvalContext, prompts: list[str]) -> list[str]:
        from harness.api import sample_completions

        if context.policy.sampler is not None:  # a procedure (best-of-n) samples its own way
            return context.policy.sampler(prompts, context.generation, context.device)[0]
        if context.model is None:
            raise HarnessError("eval ood: no policy model to sample")
        samples = sample_completions(context.model, context.tokenizer, prompts, context.generation, context.device)
        return samples.completions
