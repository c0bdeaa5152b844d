"""`algorithm=rloo`: REINFORCE Leave-One-Out (Ahmadian et al. 2024) with TRL's `RLOOTrainer`.

Like GRPO it samples k completions per prompt, but each one's baseline is the mean reward of the other k-1.
Same plumbing as `grpo.py`; only TRL's trainer and config differ.
"""

from __future__ import annotations

from plugins.algorithms.grpo import GRPO


class RLOO(GRPO):
    trainer_name = "RLOOTrainer"
    config_name = "RLOOConfig"
