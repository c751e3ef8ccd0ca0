"""Seeded random walks over the model: sample reachable states for tests and benchmarks."""

from __future__ import annotations

import random

from .actions import Model
from .seeds import seed_states
from .step import State, successors


def random_reachable_states(model: Model, n: int, seed: int, max_len: int = 12) -> list[State]:
    """`n` states reached by seeded random walks from the seed states."""
    rnd = random.Random(seed)
    seeds = seed_states(model)
    out: list[State] = []
    while len(out) < n:
        s = rnd.choice(seeds).state
        for _ in range(rnd.randint(0, max_len)):
            succ = list(successors(model, s))
            if not succ:
                break
            s = rnd.choice(succ)[1]
        out.append(s)
    return out
