"""Unbounded checking by induction (the Houdini algorithm).

Bounded checking says "no violation within N steps". Induction can say "never": if a set of
state invariants holds in the fresh state and every transition from any state satisfying all
of them leads to a state satisfying all of them, they hold in every reachable state, however
long the path. Houdini starts from all candidate invariants, asks Z3 for one transition from
a state satisfying the set to a state violating some member, drops the members such a
transition violates, and repeats until the set is inductive. What is left is proven for
all depths; what was dropped is not refuted, only not provable this way (it may need a
stronger companion invariant). Step properties are then proven for every transition out of
a state that satisfies the inductive set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import z3

from .bmc import Checker, eval_concrete
from .findings import findings_for
from .invariants import INVARIANTS
from .state import Config


@dataclass
class InductionResult:
    proved: list[str]  # hold in every reachable state / on every reachable transition
    not_inductive: list[str]
    seconds: float
    rounds: int


def houdini(cfg: Config, invariant_ids: list[str] | None = None,
            timeout_ms: int = 120_000,
            support: Callable[[dict[str, z3.ExprRef]], list[z3.BoolRef]] | None = None
            ) -> InductionResult:
    """The invariants among `invariant_ids` (default: all but this revision's findings)
    proven for every depth. `support(state)` gives facts already proven inductive on their
    own (the conformance suite's stored lemmas, `conformance.goals.support_for`); they are
    assumed in every pre-state, which is sound because they hold in every reachable state
    whatever the candidates are, and lets candidates that need them be proven too."""
    t0 = time.perf_counter()
    ck = Checker(cfg)
    model, enc = ck.model, ck.enc
    findings = findings_for(cfg.revision)
    ids = [i for i in (invariant_ids or list(INVARIANTS)) if i not in findings]
    fresh = model.layout.fresh_state()
    state_ids = [i for i in ids if INVARIANTS[i].kind != "step"]
    step_ids = [i for i in ids if INVARIANTS[i].kind == "step"]
    # base case: the fresh instance satisfies the candidates
    cand = [i for i in state_ids if eval_concrete(INVARIANTS[i], model, None, None, fresh)]
    dropped = [i for i in state_ids if i not in cand]
    pre = enc.state_vars(0)
    post = enc.state_vars(1)
    act = enc.act_var(0)
    step = enc.step(pre, act, post)
    if support is not None:
        step = z3.And(step, *support(pre))

    def at(i: str, s: dict, t: dict) -> z3.BoolRef:
        return ck.at_step(INVARIANTS[i], s, act, t)

    # a state invariant's template reads the "next" variables, so evaluate it on (x, x)
    rounds = 0
    while cand:
        rounds += 1
        solver = z3.SolverFor("QF_BV")
        solver.set("timeout", timeout_ms)
        solver.add(step)
        for i in cand:
            solver.add(at(i, pre, pre))
        solver.add(z3.Or(*[z3.Not(at(i, pre, post)) for i in cand]))
        res = solver.check()
        if res == z3.unsat:
            break
        if res != z3.sat:
            dropped += cand  # unknown: prove nothing
            cand = []
            break
        m = solver.model()
        bad = [i for i in cand
               if z3.is_false(m.eval(at(i, pre, post), model_completion=True))]
        cand = [i for i in cand if i not in bad]
        dropped += bad
    proved = list(cand)
    for i in step_ids:
        solver = z3.SolverFor("QF_BV")
        solver.set("timeout", timeout_ms)
        solver.add(step)
        for j in cand:
            solver.add(at(j, pre, pre))
        solver.add(z3.Not(ck.at_step(INVARIANTS[i], pre, act, post)))
        if solver.check() == z3.unsat:
            proved.append(i)
        else:
            dropped.append(i)
    return InductionResult(sorted(proved, key=ids.index), sorted(dropped, key=ids.index),
                           time.perf_counter() - t0, rounds)
