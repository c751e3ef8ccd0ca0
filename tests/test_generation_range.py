"""Generations stay in the model's range (`Ctx.inc`), in both semantics alike.

A generation is a 6-bit vector in the Z3 encoding. Without a guard, `63 + 1` would wrap to 0
there while the concrete step function rejects it, and induction would have to reckon with
instances whose generation fell back to 0 or 1 (which made "a NoVmm instance names no active
VMM" unprovable: the create saga's MOVE_TO_STOPPED would match again). An action whose
increment would leave the range is disabled instead, concretely and in Z3.
"""

from __future__ import annotations

import pytest
import z3

from conformance.goals import stored_proof
from model.actions import model_for
from model.bmc import encoding_for
from model.expr import GEN_MAX
from model.seeds import seed_states
from model.state import Config
from model.step import apply

# mark_instance_failed writes the instance's generation + 1
ACTION = "user.instance_stop(vmm=0, sled=unhealthy)"


def _z3_enabled(revision: str, state: dict[str, int | bool], label: str) -> bool:
    model = model_for(Config(revision=revision))
    enc = encoding_for(model.cfg)
    pre, post = enc.state_vars(0), enc.state_vars(1)
    s = z3.SolverFor("QF_BV")
    s.add(enc.equals(pre, state), enc.step(pre, z3.BitVecVal(model.action_index(label),
                                                              enc.act_var(0).size()), post))
    return s.check() == z3.sat


def test_an_increment_past_the_range_is_disabled_in_both_semantics() -> None:
    model = model_for(Config(revision="baseline"))
    (running,) = seed_states(model, ["running"])
    i = model.action_index(ACTION)
    below = {**running.state, "i_gen": GEN_MAX - 1}
    at = {**running.state, "i_gen": GEN_MAX}
    after = apply(model, i, below)
    assert after is not None and after["i_gen"] == GEN_MAX
    assert apply(model, i, at) is None
    assert _z3_enabled("baseline", below, ACTION)
    assert not _z3_enabled("baseline", at, ACTION)


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_no_vmm_instance_names_no_active_vmm_is_proven(revision: str) -> None:
    """The structural lemma behind the STOPPED/<VMM state> pairs being unreachable is part
    of the stored inductive set, re-proven here."""
    model = model_for(Config(revision=revision))
    proof = stored_proof(model, encoding_for(model.cfg))
    names = {lem.name for lem in proof.lemmas}
    assert "i_state=1 => i_active in [7]" in names
    assert "i_state=0 => v_alloc.0 in [False]" in names


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_stored_lemmas_hold_on_reachable_states(revision: str) -> None:
    """A soundness check of the proof machinery: every stored lemma (proven inductive) is
    true on every state of every seed's path, deep seeds included (51 steps at most)."""
    from conformance.goals import _holds, seed_paths
    from model.seeds import ALL_SEEDS

    model = model_for(Config(revision=revision))
    proof = stored_proof(model, encoding_for(model.cfg))
    assert proof.lemmas
    paths = seed_paths(model, list(ALL_SEEDS))
    assert {p.name for p in paths} >= {"running", "migrating", "remigrating"}
    for p in paths:
        for n, s in enumerate(p.states):
            bad = [lem.name for lem in proof.lemmas if not _holds(model, lem, s)]
            assert not bad, (p.name, n, bad)


def test_an_action_number_outside_the_model_is_a_solver_error_not_a_crash() -> None:
    """Z3 once answered action number 656 of 251 (after many queries stopped by their
    resource limit), and generation died with an IndexError; such a model is now a
    disagreement: reported, blocked, never a path."""
    from conformance.goals import _replay, seed_paths
    from model.bmc import AgreementError

    model = model_for(Config(revision="rfd486"))
    start = seed_paths(model)[0]
    with pytest.raises(AgreementError, match="656"):
        _replay(model, start, [656])
    assert _replay(model, start, [model.action_index("instance-create.MOVE_TO_STOPPED(outcome=ok)")])


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_state_invariants_evaluate_at_the_top_of_the_range(revision: str) -> None:
    """An invariant is no action: at a generation of 63 (no reachable state has one, but a
    Houdini counterexample to induction may) it still has a value, and the concrete value is
    Z3's. `traces lemmas` once crashed here: `update_saga_never_panics` asks what an update
    saga would do, and the guarded increment raised `Disabled`."""
    from model.bmc import eval_concrete
    from model.expr import Z3, Ctx, lift
    from model.invariants import INVARIANTS

    model = model_for(Config(revision=revision))
    enc = encoding_for(model.cfg)
    (running,) = seed_states(model, ["migrating"])
    state = {**running.state, "i_gen": GEN_MAX}
    vars_ = enc.state_vars(0)
    checked = 0
    for inv in INVARIANTS.values():
        if inv.kind == "step":
            continue
        concrete = eval_concrete(inv, model, None, None, state)
        term = lift(inv.fn(Ctx(Z3, vars_, model.layout.sizes), model.cfg, model))
        s = z3.SolverFor("QF_BV")
        s.add(enc.equals(vars_, state))
        s.add(term if not concrete else z3.Not(term))
        assert s.check() == z3.unsat, inv.id
        checked += 1
    assert checked >= 20
