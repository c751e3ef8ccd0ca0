"""Coverage goals of the conformance suite and what a model run covers.

Goals are strings: `action:<label>` for every action of the model, and
`pair:<external state>/<active VMM state>` for every combination of the instance's external
state (SPEC §3) and the state of its active VMM row (`none` when no active VMM is present).
`node:<saga>.<NODE>:<fail|crash>` goals (saga nodes as failure and crash points) are made
of action goals; see `goals.py`.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from model.actions import Model
from model.effective_state import active_vmm_present, effective_state
from model.expr import CONCRETE, Ctx, Val
from model.state import Config
from model.step import State
from model.vocab import ExternalState, VmmState


def action_goal(label: str) -> str:
    return f"action:{label}"


def pair_parts(ctx: Ctx, cfg: Config) -> tuple[Val, Val, Val]:
    """The instance's external state, whether an active VMM is present, and that VMM's
    state: the pair goal of a state, over a concrete or a Z3 `Ctx` (the search for pair
    goals in `goals.py` states its predicate with this function too)."""
    return (effective_state(ctx, cfg), active_vmm_present(ctx),
            ctx.at("v_state", ctx["i_active"]))


def pair_of(model: Model, s: State) -> str:
    ext, present, vmm = pair_parts(Ctx(CONCRETE, s, model.layout.sizes), model.cfg)
    v = VmmState(int(vmm)).name if present else "none"
    return f"pair:{ExternalState(int(ext)).name}/{v}"


def all_action_goals(model: Model) -> list[str]:
    return [action_goal(a.label) for a in model.actions]


def all_pair_goals() -> list[str]:
    """Every syntactically possible pair (most are unreachable)."""
    exts = [e.name for e in ExternalState if e != ExternalState.LEAKED_SAGA_UNWOUND]
    vmms = ["none"] + [v.name for v in VmmState if v not in (VmmState.ABSENT, VmmState.GONE)]
    return [f"pair:{e}/{v}" for e in exts for v in vmms]


def goals_of_step(model: Model, label: str, after: State) -> set[str]:
    return {action_goal(label), pair_of(model, after)}


class TeethGoals:
    """Goals `teeth:<mutant>`: a step after which the model with that defect switched on
    shows different observed variables (or cannot take the step at all). Replaying a trace
    with such a step against the implementation with the same defect must then fail there."""

    def __init__(self, model: Model, mutants: list[str]) -> None:
        from model.actions import model_for
        from model.state import Config

        from .refinement import observe_model

        self.model = model
        self.observe = observe_model
        self.others = {m: model_for(Config(model.cfg.revision, mutants=(m,)))
                       for m in mutants}

    def goals(self, label: str, pre: State, post: State, skip: AbstractSet[str]) -> set[str]:
        """The teeth goals of one step, except those in `skip` (already covered)."""
        from model.step import ModelBoundExceeded, apply

        out: set[str] = set()
        mine = None
        for m, other in self.others.items():
            goal = f"teeth:{m}"
            if goal in skip:
                continue
            i = other.by_label.get(label)
            try:
                t = None if i is None else apply(other, i, pre)
            except ModelBoundExceeded:
                continue
            if t is None:
                out.add(goal)
            elif t != post:
                mine = self.observe(self.model, post) if mine is None else mine
                if self.observe(other, t) != mine:
                    out.add(goal)
        return out
