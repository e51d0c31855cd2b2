"""The prompt stream of a run: which training problems each step uses, with data reuse tau.

A run of `steps` x B prompts (D_total) with reuse tau uses the first U = ceil(D_total / tau)
problems of the train split and cycles through them tau times, each cycle in a fresh order
drawn from (seed, cycle). The stream is a pure function of the number of prompts consumed D,
so the data cursor of a checkpoint is just D. U and the cycle orders depend on the run's
length: a 480-step run's first 120 steps see other prompts than a 120-step run of the same seed
(the same distribution, another draw), so runs of different lengths are not nested.
"""

from __future__ import annotations

import random


class PromptStream:
    def __init__(self, n_items: int, unique: int, seed: int):
        if unique > n_items:
            raise ValueError(f"{unique} unique prompts requested from {n_items}")
        self.unique = unique
        self.seed = seed
        self._orders: dict[int, list[int]] = {}

    def _order(self, cycle: int) -> list[int]:
        if cycle not in self._orders:
            order = list(range(self.unique))
            random.Random(self.seed * 1_000_003 + cycle).shuffle(order)
            self._orders = {cycle: order}  # only the current cycle is ever needed again
        return self._orders[cycle]

    def take(self, consumed: int, n: int) -> list[int]:
        """Indices into the train split of prompts consumed+0 .. consumed+n-1."""
        return [self._order(d // self.unique)[d % self.unique] for d in range(consumed, consumed + n)]

    def unique_seen(self, consumed: int) -> int:
        """Distinct prompts among the first `consumed`."""
        return min(consumed, self.unique)
