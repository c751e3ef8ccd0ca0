"""The independence relation behind the checker's partial-order reduction is sound.

`Encoding.independent(i, j)` is computed from the variables each action's guard and effects
mention. These tests check its promise on concrete reachable states: when two independent
actions are both enabled, running them in either order is possible and ends in the same
state, and neither disables the other.
"""

from __future__ import annotations

import pytest

from model.actions import model_for
from model.bmc import encoding_for
from model.sampling import random_reachable_states
from model.state import Config
from model.step import apply, enabled


def commuting_pairs(revision: str, n: int, seed: int) -> int:
    cfg = Config(revision=revision)
    model, enc = model_for(cfg), encoding_for(cfg)
    checked = 0
    for s in random_reachable_states(model, n, seed):
        on = enabled(model, s)
        for i in on:
            after_i = apply(model, i, s)
            assert after_i is not None
            for j in on:
                if j <= i or not enc.independent(i, j):
                    continue
                after_j = apply(model, j, s)
                assert after_j is not None
                ij, ji = apply(model, j, after_i), apply(model, i, after_j)
                labels = (model.actions[i].label, model.actions[j].label)
                assert ij is not None and ji is not None, f"{labels} disable each other"
                assert ij == ji, f"{labels} do not commute"
                checked += 1
    return checked


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_independent_actions_commute(revision: str) -> None:
    assert commuting_pairs(revision, 40, seed=5) > 200


def test_independence_is_not_trivial() -> None:
    """Both outcomes occur: some pairs are independent, and two sagas that both try to take
    the updater lock are not (each writes the lock the other reads)."""
    cfg = Config()
    model, enc = model_for(cfg), encoding_for(cfg)
    n = len(model.actions)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    indep = sum(enc.independent(i, j) for i, j in pairs)
    assert 0 < indep < len(pairs)
    lock0 = model.action_index("start-instance-update.LOCK_INSTANCE(saga=0, outcome=ok)")
    lock1 = model.action_index("start-instance-update.LOCK_INSTANCE(saga=1, outcome=ok)")
    assert not enc.independent(lock0, lock1)
    assert all(enc.independent(i, j) == enc.independent(j, i) for i, j in pairs[:5000])
