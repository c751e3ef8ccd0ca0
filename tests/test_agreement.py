"""The concrete step function and the Z3 transition relation agree.

Both come from the same action definitions (model/expr.py); this test checks that the two
meanings compute the same successor sets: for random reachable states s, the set of
(action, next state) pairs from the step function equals the set Z3 enumerates for T(s, s').
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import z3

from conformance.generate import walk_from_labels
from conformance.scenarios import START_UNDO_UNHEALTHY
from model.actions import Model, model_for
from model.sampling import random_reachable_states
from model.state import Config
from model.step import State, successors
from model.z3enc import Encoding


def z3_successors(enc: Encoding, s: dict) -> set[tuple[int, tuple]]:
    names = enc.layout.names
    rel = z3.substitute(enc.relation, *[(enc.cur[n], _val(enc, n, s[n])) for n in names])
    solver = z3.SolverFor("QF_BV")
    solver.add(rel)
    out: set[tuple[int, tuple]] = set()
    while solver.check() == z3.sat:
        m = solver.model()
        a = m.eval(enc.act, model_completion=True).as_long()
        nxt = enc.read_state(m, enc.nxt)
        out.add((a, tuple(nxt[n] for n in names)))
        solver.add(enc.act != a)
    return out


def _val(enc: Encoding, name: str, v: int | bool) -> z3.ExprRef:
    from model.z3enc import to_z3

    return to_z3(enc.layout, name, v)


def check(revision: str, n: int, seed: int) -> int:
    model = model_for(Config(revision=revision))
    return check_states(model, random_reachable_states(model, n, seed))


def check_states(model: Model, states: Iterable[State]) -> int:
    enc = Encoding(model)
    names = model.layout.names
    total = 0
    for s in states:
        concrete = {(i, tuple(t[k] for k in names)) for i, t in successors(model, s)}
        symbolic = z3_successors(enc, s)
        assert concrete == symbolic, (
            f"disagreement in state {s}: only concrete "
            f"{sorted(model.actions[i].label for i, _ in concrete - symbolic)}, only z3 "
            f"{sorted(model.actions[i].label for i, _ in symbolic - concrete)}")
        total += len(concrete)
    return total


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_agreement_sample(revision: str) -> None:
    assert check(revision, 60, seed=11) > 60  # states have successors, and they agree


@pytest.mark.slow
@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_agreement_thousand_states(revision: str) -> None:
    assert check(revision, 1000, seed=2024) > 1000


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_agreement_with_stuck_undos(revision: str) -> None:
    """The opt-in fault class `stuck_undos`: every state of a path into a stuck start saga
    (tests/test_stuck_undo.py), where its `undo-unhealthy` outcome is enabled and then the
    saga is stuck, plus random reachable states of that configuration."""
    cfg = Config(revision=revision, stuck_undos=True)
    model = model_for(cfg)
    path = walk_from_labels(cfg, START_UNDO_UNHEALTHY).states
    assert check_states(model, [*path, *random_reachable_states(model, 30, seed=5)]) > 30
