"""Batches of rows of similar length: the same forward passes on less padding.

Responses sampled in one batch run from a few tokens to the most allowed, and a batch is padded to its
longest row: on the testbed one response in twenty that never ends makes every other row ~3x wider than it
is. Splitting the rows, sorted by length, into groups that are each padded only to their own longest cuts
that waste; each extra group costs one more call (Python, kernel launches), so the split is chosen to
minimise  sum over groups of rows x (fixed + longest)  +  call_cost x groups  (exact, by dynamic programming).
Callers put the results back in the original row order, and losses summed over groups are normalised by the
whole batch's token count, so results are those of the unsplit batch (up to float summation order).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# One extra forward call costs about as much as this many token positions of the testbed model on one CPU
# thread (measured with bench/profile_ppo.py: ~3 ms of Python and dispatch per call, ~0.03 ms per position).
CALL_COST = 96


def length_groups(lengths: Sequence[int] | torch.Tensor, fixed: int = 0, call_cost: int = CALL_COST) -> list[list[int]]:
    """Row indices split into groups of similar length (each sorted, shortest group first).

    `lengths`: each row's real length; `fixed`: positions every row has besides (e.g. a left-padded prompt);
    `call_cost`: what one more group costs, in token positions. One group when splitting does not pay.
    """
    values = [int(v) for v in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]
    order = sorted(range(len(values)), key=values.__getitem__)
    n = len(order)
    if n == 0:
        return []
    # best[j]: least cost of the first j sorted rows; cut[j]: where the last group of that split starts
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        width = fixed + values[order[j - 1]]  # sorted: the group's last row is its longest
        for i in range(j):
            cost = best[i] + (j - i) * width + call_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups = []
    j = n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]
