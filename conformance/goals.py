"""Goals the random walks miss: Z3-directed search, and proofs that a goal is unreachable.

Two questions are asked of the model's Z3 encoding (`model/z3enc.py`) for every action or
(external state, active VMM state) goal the walks of `generate.py` did not cover:

1. **Can it be reached at all?** A set of lemmas L is proven inductive (Houdini, as in
   `model/induction.py`): L holds in the fresh instance (checked on the concrete state) and
   no transition of the encoding leads from a state satisfying L to one violating it (Z3
   answers unsat). Every concrete transition is a transition of the encoding (the agreement
   test), and the seeds and every walk start at the fresh instance, so L holds in every
   reachable state. If then `L(s) ∧ goal(s)` is unsat (for an action goal: its guard; for a
   pair goal: the pair predicate), no reachable state satisfies the goal: the goal is
   *proven unreachable*. Nothing else makes a goal unreachable; an `unknown` answer proves
   nothing.

   The candidates for L are the state invariants of `model/invariants.py` plus simple
   facts mined from the states the walks visited: a variable only takes the values seen
   (`x ∈ V`), and when `x = c` another variable only takes the values seen with it
   (`x = c ⇒ y ∈ V`; x, y among the instance row, VMM rows, saga links and the derived
   pair observables), and facts read off the protocol's structure (`structural_lemmas`:
   what holds while the instance is Creating, which states a VMM row can hold, ...).
   Mining only proposes; Houdini drops every candidate that is not part
   of an inductive set, so what is kept is proven, however it was guessed. The set is
   built offline (`lifecycle traces lemmas`, `targeted_houdini`), stored in
   `conformance/lemmas/`, and re-proven on every use (`stored_proof`).

2. **If it may be reachable, where is a shortest path to it?** Bounded model checking from
   the checker's seed states (`model/seeds.py`): the path is unrolled k = 1, 2, ... K steps
   and the goal is asked at the last step (the action variable of the last step equals the
   goal action, so its guard holds; or the last state satisfies the pair predicate). The
   first k with an answer gives a shortest path from any seed. The path is replayed with the
   concrete step function, which must agree with Z3 and must cover the goal; a path that
   runs into a known divergence (`conformance/divergences.py`) or out of the model's bounds
   (or, a tool bug, disagrees with the concrete step function: reported, never used) is
   excluded by a blocking clause on its action sequence and the query is asked again.
   Every path found is blocked for the later queries, so no two traces share an action
   sequence. Each goal has a time budget; a goal whose query times out is *undecided*.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import z3

from model.actions import Model, model_for
from model.bmc import AgreementError, encoding_for
from model.expr import CONCRETE, Z3, Ctx, Val, lift
from model.findings import findings_for
from model.invariants import INVARIANTS
from model.seeds import ALL_SEEDS, SEEDS, expand_step
from model.state import FWD, GEN_BITS, NONE, UNWIND, Config
from model.step import ModelBoundExceeded, State, apply
from model.vocab import ExternalState, InstanceState, VmmState
from model.z3enc import Encoding, Substitution

from . import relational
from .coverage import pair_parts
from .divergences import divergence_at

Pred = Callable[[Ctx], Val]


# ------------------------------------------------------------------------------ goals
def pair_predicate(goal: str, cfg: Config) -> Pred:
    """The state predicate of goal `pair:<ext>/<vmm>`, over any `Ctx` (concrete or Z3)."""
    ext_name, _, vmm_name = goal.removeprefix("pair:").partition("/")
    ext = int(ExternalState[ext_name])

    def pred(ctx: Ctx) -> Val:
        e, present, v = pair_parts(ctx, cfg)
        if vmm_name == "none":
            return ctx.ops.And(e == ext, ctx.ops.Not(present))
        return ctx.ops.And(e == ext, present, v == int(VmmState[vmm_name]))

    return pred


def node_goals(model: Model) -> dict[str, list[str]]:
    """`node:<saga kind>.<NODE>:<fail|crash>` -> the action goals (one per saga slot) that
    cover it: every saga node as a failure point and as a crash point."""
    out: dict[str, list[str]] = {}
    for a in model.actions:
        oc = a.arg("outcome")
        if "saga" not in a.tags or "undo" in a.tags or oc not in ("fail", "crash"):
            continue
        out.setdefault(f"node:{a.name}:{oc}", []).append(f"action:{a.label}")
    return dict(sorted(out.items()))


# Why a node has no fail or no crash outcome in the model (the SagaDef's fails/crashes flags).
NODES_WITHOUT = {
    "instance-create.CREATE_INSTANCE_RECORD": (
        "fail, crash", "the model starts right after this node (the fresh instance); its "
        "own failure would leave no instance to model (SPEC §4.11)"),
    "instance-start.ENSURE_RUNNING": (
        "crash", "the node writes nothing in the model (the sled's answer is not applied, "
        "SPEC §4.2 node 10), so effect-then-crash is the same state: a re-run of the node"),
    "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA": (
        "crash", "its crash is the action nexus.crash_and_recover (R6: the parent forgets "
        "the child it started and re-runs the node)"),
}


def nodes_lacking(model: Model) -> dict[str, tuple[str, str]]:
    """Saga nodes without a fail or crash action: node -> (missing outcomes, why)."""
    out: dict[str, tuple[str, str]] = {}
    for sd in model.sagas:
        for n in sd.nodes:
            missing = [oc for oc, ok in (("fail", n.fails), ("crash", n.crashes)) if not ok]
            if missing:
                key = f"{sd.kind}.{n.name}"
                why = NODES_WITHOUT.get(key, ("", "not documented"))[1]
                out[key] = (", ".join(missing), why)
    return out


# ------------------------------------------------------------------------------ lemmas
@dataclass(frozen=True)
class Lemma:
    """A candidate state predicate, as data (so a proven set can be stored and re-checked):
    `("invariant", id)`, `("in", x, values)`, `("implies", x, c, y, values)` or, with two
    conditions, `("implies2", x1, c1, x2, c2, y, values)`."""

    spec: tuple[object, ...]

    @property
    def name(self) -> str:
        k = self.spec
        if k[0] == "invariant":
            return f"invariant {k[1]}"
        if k[0] == "in":
            return f"{k[1]} in {list(k[2])}"  # type: ignore[call-overload]
        if k[0] == "implies2":
            return (f"{k[1]}={k[2]} & {k[3]}={k[4]} => "
                    f"{k[5]} in {list(k[6])}")  # type: ignore[call-overload]
        return f"{k[1]}={k[2]} => {k[3]} in {list(k[4])}"  # type: ignore[call-overload]

    def to_json(self) -> list[object]:
        return [list(x) if isinstance(x, tuple) else x for x in self.spec]

    @staticmethod
    def from_json(data: list[object]) -> Lemma:
        return Lemma(tuple(tuple(x) if isinstance(x, list) else x  # type: ignore[arg-type]
                           for x in data))

    def holds(self, ctx: Ctx, model: Model) -> Val:
        k = self.spec
        if k[0] == "invariant":
            return INVARIANTS[str(k[1])].fn(ctx, model.cfg, model)
        if k[0] == "in":
            x, vals = str(k[1]), k[2]
            return _in(ctx, x, vals, _is_bool(model, x), model.cfg)  # type: ignore[arg-type]
        if k[0] == "implies2":
            x1, c1, x2, c2, y, vals = str(k[1]), k[2], str(k[3]), k[4], str(k[5]), k[6]
            return ctx.ops.Implies(
                ctx.ops.And(_eq(ctx, x1, c1, _is_bool(model, x1), model.cfg),  # type: ignore[arg-type]
                            _eq(ctx, x2, c2, _is_bool(model, x2), model.cfg)),  # type: ignore[arg-type]
                _in(ctx, y, vals, _is_bool(model, y), model.cfg))  # type: ignore[arg-type]
        x, c, y, vals = str(k[1]), k[2], str(k[3]), k[4]
        return ctx.ops.Implies(
            _eq(ctx, x, c, _is_bool(model, x), model.cfg),  # type: ignore[arg-type]
            _in(ctx, y, vals, _is_bool(model, y), model.cfg))  # type: ignore[arg-type]


# derived observables mined like variables: the pair of a state and the target VMM's state
DERIVED: dict[str, tuple[bool, Callable[[Ctx, Config], Val]]] = {
    "@external": (False, lambda ctx, cfg: pair_parts(ctx, cfg)[0]),
    "@active_present": (True, lambda ctx, cfg: pair_parts(ctx, cfg)[1]),
    "@active_state": (False, lambda ctx, cfg: pair_parts(ctx, cfg)[2]),
    "@target_state": (False, lambda ctx, cfg: ctx.at("v_state", ctx["i_target"])),
}


def _observable(name: str) -> relational.Observable | None:
    """A derived observable: one of `DERIVED`, or a relational one (`relational.py`)."""
    if name in DERIVED:
        return DERIVED[name]
    return relational.observable(name) if name.startswith("@") else None


def _read(ctx: Ctx, name: str, cfg: Config) -> Val:
    if (obs := _observable(name)) is not None:
        return obs[1](ctx, cfg)
    return ctx[name]


def _is_bool(model: Model, name: str) -> bool:
    if (obs := _observable(name)) is not None:
        return obs[0]
    return model.layout.kind(name) == "bool"


def _in(ctx: Ctx, name: str, values: Iterable[int | bool], boolean: bool,
        cfg: Config) -> Val:
    vals = sorted(set(values))
    x = _read(ctx, name, cfg)
    if boolean:
        if vals == [True]:
            return x
        if vals == [False]:
            return ctx.ops.Not(x)
        return True
    return ctx.ops.In(x, [int(v) for v in vals])


def _eq(ctx: Ctx, name: str, value: int | bool, boolean: bool, cfg: Config) -> Val:
    x = _read(ctx, name, cfg)
    if boolean:
        return x if value else ctx.ops.Not(x)
    return x == int(value)


SMALL = ("bool", "enum", "ref")
# variables whose values are related pairwise in the mined candidates: the instance row,
# the VMM rows, and the sagas' modes and links to VMMs
CORE = ("i_state", "i_active", "i_target", "i_mig", "v_alloc", "v_state", "v_del",
        "cr_mode", "cr_pc", "st_mode", "st_vmm", "mg_mode", "mg_vmm")


def mined_lemmas(model: Model, sample: list[State]) -> list[Lemma]:
    """Candidate facts true in every sampled (reachable) state: value sets of the small
    variables, and value sets of one core variable conditional on another's value."""
    layout = model.layout
    names = [n for n in layout.names if layout.kind(n) in SMALL] + list(DERIVED)
    core = [n for n in names if n.split(".")[0] in CORE or n in DERIVED]
    seen: dict[str, set[int | bool]] = {n: set() for n in names}
    sample = [_with_derived(model, s) for s in sample]
    for s in sample:
        for n in names:
            seen[n].add(s[n])
    out: list[Lemma] = []
    for n in names:  # (non-boolean variables are 6-bit vectors in the encoding)
        if len(seen[n]) < (2 if _is_bool(model, n) else 64):
            out.append(Lemma(("in", n, tuple(sorted(seen[n])))))
    cond: dict[tuple[str, int | bool], dict[str, set[int | bool]]] = {}
    varying = [x for x in core if len(seen[x]) > 1]
    rows = {tuple(s[n] for n in varying) for s in sample}
    for row in rows:
        for xi, x in enumerate(varying):
            d = cond.setdefault((x, row[xi]), {})
            for yi, y in enumerate(varying):
                if yi != xi:
                    d.setdefault(y, set()).add(row[yi])
    for (x, c), d in sorted(cond.items(), key=lambda kv: (core.index(kv[0][0]), kv[0][1])):
        for y in varying:
            if y != x and y in d and len(d[y]) < len(seen[y]):
                out.append(Lemma(("implies", x, c, y, tuple(sorted(d[y])))))
    return out


def _with_derived(model: Model, s: State) -> State:
    ctx = Ctx(CONCRETE, s, model.layout.sizes)
    out = dict(s)
    for n, (boolean, fn) in DERIVED.items():
        v = fn(ctx, model.cfg)
        out[n] = bool(v) if boolean else int(v)
    return out


def invariant_lemmas(model: Model) -> list[Lemma]:
    """The state invariants of the model (those not refuted for this revision)."""
    findings = findings_for(model.cfg.revision)
    return [Lemma(("invariant", inv.id)) for inv in INVARIANTS.values()
            if inv.kind == "state" and inv.id not in findings]


@dataclass
class Proof:
    """An inductive set of lemmas, proven with Z3."""

    lemmas: list[Lemma]
    rounds: int
    seconds: float
    dropped: int


def _holds(model: Model, lem: Lemma, s: State) -> bool:
    return bool(lem.holds(Ctx(CONCRETE, s, model.layout.sizes), model))


def _term(model: Model, lem: Lemma, vars: dict[str, z3.ExprRef]) -> z3.BoolRef:
    return lift(lem.holds(Ctx(Z3, vars, model.layout.sizes), model))  # type: ignore[no-any-return]


def rlimit_count(solver: z3.Solver) -> int:
    """Z3's resource counter (`rlimit count`): it only grows, and it is the same for the same
    queries on any machine with the same Z3 version, however fast or loaded the machine is."""
    st = solver.statistics()
    return int(st.get_key_value("rlimit count")) if "rlimit count" in st.keys() else 0


# In the deterministic mode, a wall-clock bound only against a query whose work Z3 does not
# count (then the answer is `unknown` and the run is no longer machine-independent).
SAFETY_TIMEOUT_MS = 600_000


def limit_check(solver: z3.Solver, timeout_ms: int, rlimit: int | None) -> None:
    """Bound the solver's next check: by Z3 resource units when `rlimit` is given (the
    deterministic budget), else by wall-clock milliseconds."""
    if rlimit is not None:
        solver.set("rlimit", max(1, rlimit))
        solver.set("timeout", SAFETY_TIMEOUT_MS)
    else:
        solver.set("timeout", max(1, timeout_ms))


def support_for(cfg: Config) -> Callable[[dict[str, z3.ExprRef]], list[z3.BoolRef]] | None:
    """The stored lemmas of this configuration, re-proven now, as support for the model's
    induction (`model.induction.houdini`); None when none are stored or none survive."""
    model = model_for(cfg)
    proof = stored_proof(model, encoding_for(cfg))
    if not proof.lemmas:
        return None
    return lambda state: [_term(model, lem, state) for lem in proof.lemmas]


def houdini(model: Model, enc: Encoding, cands: list[Lemma], timeout_ms: int = 120_000,
            deadline: float | None = None,
            log: Callable[[str], None] | None = None, rlimit: int | None = None) -> Proof:
    """The largest inductive subset of `cands` that holds in the fresh instance.

    One incremental solver: lemma j is assumed in the pre-state through a switch literal,
    so dropping a lemma only leaves its switch out of the next query's assumptions."""
    t0 = time.perf_counter()
    fresh = model.layout.fresh_state()
    cand = [lem for lem in cands if _holds(model, lem, fresh)]
    dropped = len(cands) - len(cand)
    pre, post = enc.state_vars(0), enc.state_vars(1)
    solver = z3.SolverFor("QF_BV")
    solver.add(enc.step(pre, enc.act_var(0), post))
    switch = [z3.Bool(f"lemma#{j}") for j in range(len(cand))]
    post_t = []
    for j, lem in enumerate(cand):
        solver.add(z3.Implies(switch[j], _term(model, lem, pre)))
        post_t.append(_term(model, lem, post))
    keep = list(range(len(cand)))
    rounds = 0
    while keep:
        rounds += 1
        left = timeout_ms
        if deadline is not None and rlimit is None:
            left = min(left, int((deadline - time.perf_counter()) * 1000))
        if left <= 0:
            return Proof([], rounds, time.perf_counter() - t0, len(cands))
        limit_check(solver, left, rlimit)  # rlimit: per round, and no deadline applies
        goal = z3.Bool(f"round#{rounds}")
        solver.add(z3.Implies(goal, z3.Or(*[z3.Not(post_t[j]) for j in keep])))
        res = solver.check(*[switch[j] for j in keep], goal)
        if log is not None:
            log(f"houdini round {rounds}: {len(keep)} lemmas, {res}, "
                f"{time.perf_counter() - t0:.1f}s")
        if res == z3.unsat:
            break
        if res != z3.sat:
            return Proof([], rounds, time.perf_counter() - t0, len(cands))  # prove nothing
        m = solver.model()
        t = enc.read_state(m, post)
        bad = {j for j in keep if not _holds(model, cand[j], t)}
        if not bad:  # the concrete reading disagrees (out-of-range value): ask Z3
            bad = {j for j in keep if z3.is_false(m.eval(post_t[j], model_completion=True))}
        if not bad:
            raise RuntimeError("Houdini: Z3 found a violation but no lemma is false")
        keep = [j for j in keep if j not in bad]
        dropped += len(bad)
    return Proof([cand[j] for j in keep], rounds, time.perf_counter() - t0, dropped)


def check_inductive(model: Model, enc: Encoding, lemmas: list[Lemma],
                    timeout_ms: int = 120_000) -> bool:
    """Re-check a lemma set from scratch: true in the fresh instance, preserved by every
    transition of the encoding."""
    fresh = model.layout.fresh_state()
    if not all(_holds(model, lem, fresh) for lem in lemmas):
        return False
    pre, post = enc.state_vars(0), enc.state_vars(1)
    solver = z3.SolverFor("QF_BV")
    solver.set("timeout", timeout_ms)
    solver.add(enc.step(pre, enc.act_var(0), post))
    solver.add(*[_term(model, lem, pre) for lem in lemmas])
    solver.add(z3.Or(*[z3.Not(_term(model, lem, post)) for lem in lemmas]))
    return solver.check() == z3.unsat


def goal_state_term(model: Model, enc: Encoding, goal: str,
                    vars: dict[str, z3.ExprRef]) -> z3.BoolRef:
    """What a state must satisfy for the goal to be covered at (action) or in (pair) it."""
    if goal.startswith("pair:"):
        return lift(pair_predicate(goal, model.cfg)(  # type: ignore[no-any-return]
            Ctx(Z3, vars, model.layout.sizes)))
    i = model.action_index(goal.removeprefix("action:"))
    ren = Substitution([(enc.cur[n], vars[n]) for n in model.layout.names])
    return ren(enc.guards[i])  # type: ignore[return-value]


def prove_unreachable(model: Model, enc: Encoding, proof: Proof, goals: list[str],
                      timeout_ms: int = 20_000, rlimit: int | None = None) -> list[str]:
    """The goals no state satisfying the inductive lemmas can satisfy (Z3: unsat); each
    goal's query is bounded by `timeout_ms`, or by `rlimit` Z3 resource units if given."""
    s = enc.state_vars(0)
    solver = z3.SolverFor("QF_BV")
    limit_check(solver, timeout_ms, rlimit)
    solver.add(*[_term(model, lem, s) for lem in proof.lemmas])
    out = []
    for g in goals:
        if solver.check(goal_state_term(model, enc, g, s)) == z3.unsat:
            out.append(g)
    return out


# ------------------------------------------------------------------------------ search
@dataclass
class Start:
    """A seed as a concrete path from the fresh instance."""

    name: str
    labels: list[str]
    states: list[State]


def seed_paths(model: Model, names: Sequence[str] | None = None) -> list[Start]:
    """The checker's seeds (by default its default ones) as label paths (a seed's `unwind:`
    step expanded into its undo actions), leaving out seeds whose path runs into a known
    divergence."""
    out: list[Start] = []
    for name, (_desc, labels) in ALL_SEEDS.items():
        if name not in (SEEDS if names is None else names):
            continue
        states = [model.layout.fresh_state()]
        path: list[str] = []
        ok = True
        for lab in labels:
            for step in expand_step(model, states[-1], lab):
                i = model.action_index(step)
                if divergence_at(model.actions[i], states[-1]) is not None:
                    ok = False
                t = apply(model, i, states[-1])
                if t is None:
                    ok = False
                    break
                path.append(step)
                states.append(t)
            if not ok:
                break
        if ok:
            out.append(Start(name, path, states))
    return out


@dataclass
class Found:
    goal: str
    start: Start
    labels: list[str]  # the steps after the start
    states: list[State]  # the states after each step


@dataclass
class SearchResult:
    found: list[Found] = field(default_factory=list)
    undecided: dict[str, str] = field(default_factory=dict)  # goal -> why
    blocked: int = 0  # paths rejected (divergence, model bound, disagreement)
    disagreements: list[str] = field(default_factory=list)  # Z3 vs concrete: tool bugs


def bmc_search(model: Model, enc: Encoding, goals: list[str], starts: list[Start],
               covers: Callable[[str, list[str], list[State]], set[str]],
               max_depth: int = 12, goal_seconds: float = 30.0,
               retries: int = 8, deadline: float | None = None,
               lemmas: list[Lemma] | None = None,
               goal_rlimit: int | None = None) -> SearchResult:
    """Shortest paths from any start to each goal, by incremental bounded model checking.

    `covers(goal, labels, states)` is the set of goals a found path covers (checked
    concretely); a goal covered by an earlier path is not searched again. Proven lemmas,
    true in every reachable state, are asserted on every state of the path to prune it.

    Each goal may spend `goal_seconds` of wall-clock time over all its queries, all goals
    together until `deadline`; with `goal_rlimit`, it may spend that many Z3 resource
    units instead and no deadline applies, so the result does not depend on the machine."""
    res = SearchResult()
    pending = list(goals)
    spent = {g: 0.0 for g in goals}
    by_state = {tuple(sorted(st.states[-1].items())): st for st in starts}
    solver = z3.SolverFor("QF_BV")
    # what a goal's budget is counted in: Z3 resource units, or seconds
    budget, unit, clock = ((float(goal_rlimit), "Z3 resource", lambda: rlimit_count(solver))
                           if goal_rlimit is not None
                           else (goal_seconds, "time", time.perf_counter))
    if goal_rlimit is not None:
        deadline = None
    states = [enc.state_vars(0)]
    solver.add(z3.Or(*[enc.equals(states[0], st.states[-1]) for st in by_state.values()]))
    acts: list[z3.BitVecRef] = []
    for k in range(1, max_depth + 1):
        if not pending:
            break
        states.append(enc.state_vars(k))
        acts.append(enc.act_var(k - 1))
        solver.add(enc.step(states[k - 1], acts[k - 1], states[k]))
        solver.add(*[_term(model, lem, states[k]) for lem in lemmas or []])
        for g in list(pending):
            if g not in pending:
                continue  # covered by a path found for another goal
            if g.startswith("action:"):
                cond = acts[k - 1] == model.action_index(g.removeprefix("action:"))
            else:
                cond = goal_state_term(model, enc, g, states[k])
            for _ in range(retries + 1):
                left = budget - spent[g]
                if deadline is not None:
                    left = min(left, deadline - time.perf_counter())
                if left <= 0:
                    res.undecided[g] = f"{unit} budget spent at depth {k}"
                    pending.remove(g)
                    break
                limit_check(solver, int(left * 1000), None if goal_rlimit is None else int(left))
                t0 = clock()
                ans = solver.check(cond)
                spent[g] += clock() - t0
                if ans == z3.unsat:
                    break
                if ans != z3.sat:
                    res.undecided[g] = f"Z3 {ans} ({solver.reason_unknown()}) at depth {k}"
                    pending.remove(g)
                    break
                m = solver.model()
                seq = [m.eval(a, model_completion=True).as_long() for a in acts]
                solver.add(z3.Not(z3.And(*[a == v for a, v in zip(acts, seq, strict=True)])))
                start = by_state[tuple(sorted(enc.read_state(m, states[0]).items()))]
                try:
                    path = _replay(model, start, seq)
                except AgreementError as e:
                    res.disagreements.append(f"{g}: {e}")
                    path = None
                if path is None:
                    res.blocked += 1
                    continue
                labels, sts = path
                got = covers(g, labels, sts)
                if g not in got:
                    raise RuntimeError(f"{g}: the path Z3 found does not cover it concretely")
                res.found.append(Found(g, start, labels, sts))
                for h in got:
                    if h in pending:
                        pending.remove(h)
                break
            else:
                res.undecided[g] = f"every path of length {k} ran into a known divergence"
                pending.remove(g)
    for g in pending:
        res.undecided[g] = f"no path within {max_depth} steps of a seed"
    return res


def _replay(model: Model, start: Start, seq: list[int]) -> tuple[list[str], list[State]] | None:
    """The path's labels and states by the concrete step function; None if a step runs into
    a known divergence or out of the model's bounds."""
    s = start.states[-1]
    labels, states = [], []
    for i in seq:
        if not 0 <= i < len(model.actions):
            # the encoding bounds the action number, so this is a wrong model from Z3; seen
            # after many queries had been stopped by their resource limit
            raise AgreementError(f"Z3 answered action number {i}, but the model has "
                                 f"{len(model.actions)} actions (a solver error)")
        if divergence_at(model.actions[i], s) is not None:
            return None
        try:
            t = apply(model, i, s)
        except ModelBoundExceeded:
            return None
        if t is None:  # Z3 and the concrete semantics disagree: a tool bug, never a path
            raise AgreementError(f"{model.actions[i].label}: enabled in Z3, not concretely")
        labels.append(model.actions[i].label)
        states.append(t)
        s = t
    return labels, states


def encoding(cfg: Config) -> Encoding:
    return encoding_for(cfg)


# ------------------------------------------------------------------------------ stored lemmas
LEMMA_DIR = Path(__file__).parent / "lemmas"


def lemma_file(cfg: Config) -> Path:
    return LEMMA_DIR / f"{'-'.join([cfg.revision, *cfg.mutants])}.json"


def save_lemmas(cfg: Config, proof: Proof) -> Path:
    p = lemma_file(cfg)
    p.parent.mkdir(parents=True, exist_ok=True)
    rows = ",\n".join(json.dumps(lem.to_json()) for lem in proof.lemmas)
    head = json.dumps({"revision": cfg.revision, "mutants": list(cfg.mutants)})[:-1]
    p.write_text(f'{head}, "lemmas": [\n{rows}\n]}}\n')  # one lemma per line
    return p


def stored_proof(model: Model, enc: Encoding, timeout_ms: int = 120_000,
                 log: Callable[[str], None] | None = None,
                 rlimit: int | None = None) -> Proof:
    """The stored lemma set of this configuration, re-proven now: Houdini from the stored
    set (one unsat query when nothing changed; a changed model only drops lemmas). Nothing
    is trusted from the file: a lemma is used only if the proof succeeds here."""
    p = lemma_file(model.cfg)
    if not p.exists():
        return Proof([], 0, 0.0, 0)
    data = json.loads(p.read_text())
    lemmas = []
    for d in data["lemmas"]:
        lem = Lemma.from_json(d)
        try:
            lem.holds(Ctx(CONCRETE, model.layout.fresh_state(), model.layout.sizes), model)
        except KeyError:
            continue  # names a variable or invariant the model no longer has
        lemmas.append(lem)
    return houdini(model, enc, lemmas, timeout_ms, log=log, rlimit=rlimit)


def enrich(model: Model, sample: list[State], levels: int = 1) -> list[State]:
    """The sample plus every state reachable from it in up to `levels` steps."""
    from model.step import successors

    seen = {tuple(s.values()): s for s in sample}
    frontier = list(seen.values())
    for _ in range(levels):
        new = []
        for s in frontier:
            try:
                for _i, t in successors(model, s):
                    k = tuple(t.values())
                    if k not in seen:
                        seen[k] = t
                        new.append(t)
            except ModelBoundExceeded:
                continue
        frontier = new
    return list(seen.values())


def structural_lemmas(model: Model) -> list[Lemma]:
    """Candidates from the protocol's structure rather than from samples (docs/conformance.md):

    - while the instance is Creating, nothing but the create saga has run: every variable
      outside the create saga and the instance's state and generation has its fresh value;
    - the generation starts at 1 and is below 2 only while the instance is Creating (the
      encoding cannot wrap a generation around: `Ctx.inc`);
    - an update saga that computed its new instance state computed NoVmm, Vmm or Failed;
    - a NoVmm instance names no active VMM;
    - a VMM row never holds a state the model's sleds and sagas never write.
    As with mined candidates, Houdini keeps only what is part of an inductive set."""
    fresh = model.layout.fresh_state()
    creating, nstates = int(InstanceState.CREATING), (int(InstanceState.NO_VMM),
                                                      int(InstanceState.VMM),
                                                      int(InstanceState.FAILED))
    out = [Lemma(("implies", "i_state", creating, n, (v,))) for n, v in fresh.items()
           if not n.startswith("cr_") and n not in ("i_state", "i_gen")]
    out.append(Lemma(("in", "i_gen", tuple(range(1, 1 << GEN_BITS)))))
    out += [Lemma(("implies", "i_gen", g, "i_state", (creating,))) for g in (0, 1)]
    for k in range(model.cfg.update_children):
        out += [Lemma(("implies", f"uc_mode.{k}", mode, f"uc_nstate.{k}", nstates))
                for mode in (FWD, UNWIND)]
    out.append(Lemma(("implies", "i_state", int(InstanceState.NO_VMM), "i_active", (NONE,))))
    # the VMM states a database row can hold: never Stopped (the model's sleds go from
    # Stopping to Destroyed), never Gone (a sled's own view); Creating only in rfd486
    rows = [int(v) for v in VmmState if v not in (VmmState.STOPPED, VmmState.GONE)
            and (model.cfg.rfd486 or v != VmmState.CREATING)]
    out += [Lemma(("in", f"v_state.{k}", tuple(rows))) for k in range(model.cfg.vmms)]
    out.append(Lemma(("in", "@active_state", tuple(rows))))
    # a sled's own view adds Gone (a report of it never reaches a buffer)
    sled = sorted(set(rows) - {int(VmmState.CREATING)})
    out += [Lemma(("in", f"sa_state.{k}", (*sled, int(VmmState.GONE))))
            for k in range(model.cfg.vmms)]
    out += [Lemma(("in", f"rb_state.{k}", tuple(sled))) for k in range(model.cfg.vmms)]
    return out


def mine_and_prove(model: Model, enc: Encoding, sample: list[State], goals: list[str],
                   log: Callable[[str], None] | None = None) -> Proof:
    """An inductive set of the model's state invariants and the facts mined from `sample`,
    aimed at refuting `goals`."""
    cands = invariant_lemmas(model) + structural_lemmas(model) + mined_lemmas(model, sample)
    if log is not None:
        log(f"{len(cands)} candidate lemmas from {len(sample)} states")
    return targeted_houdini(model, enc, cands, goals, log=log)


def targeted_houdini(model: Model, enc: Encoding, cands: list[Lemma], goals: list[str],
                     timeout_ms: int = 120_000,
                     log: Callable[[str], None] | None = None,
                     minimize_cores: bool = False,
                     on_drop: Callable[[int, list[str], str], None] | None = None) -> Proof:
    """An inductive subset of `cands` aimed at refuting `goals`, found with unsat cores.

    Plain Houdini drops one or two candidates per Z3 round, so a thousand mined candidates
    take hundreds of rounds. Here only the lemmas that matter are closed under induction:
    S starts as the union of the unsat cores of `C(s) ∧ goal(s)` (C: the candidates not yet
    dropped), and grows by the core of each unsat `C(s) ∧ T(s, s') ∧ ¬S(s')` until that core
    lies inside S, which makes S inductive by itself. A satisfiable query drops every
    candidate false in its post-state, and the cores are computed again. The result is
    re-checked from scratch with `check_inductive`.

    With `minimize_cores` Z3 shrinks every core (slower queries, a much smaller S: with
    thousands of mined candidates most of a raw core is sampling noise that later rounds
    must drop one counterexample at a time). `on_drop(round, names, action)` is told which
    candidates each counterexample to induction drops, and the action of its step. A query
    that runs out of time ends the run with no lemma set, and the log says which."""
    t0 = time.perf_counter()
    fresh = model.layout.fresh_state()
    cand = [lem for lem in cands if _holds(model, lem, fresh)]
    pre, post = enc.state_vars(0), enc.state_vars(1)
    solver = z3.SolverFor("QF_BV")
    solver.set("timeout", timeout_ms)
    if minimize_cores:
        solver.set("core.minimize", True)
    solver.add(enc.step(pre, enc.act_var(0), post))
    switch = [z3.Bool(f"lemma#{j}") for j in range(len(cand))]
    index = {sw.get_id(): j for j, sw in enumerate(switch)}
    post_t: list[z3.BoolRef] = []
    for j, lem in enumerate(cand):
        solver.add(z3.Implies(switch[j], _term(model, lem, pre)))
        post_t.append(_term(model, lem, post))
    alive = set(range(len(cand)))
    goal_t = {g: goal_state_term(model, enc, g, pre) for g in goals}
    rounds = 0

    def core() -> set[int]:
        return {index[c.get_id()] for c in solver.unsat_core() if c.get_id() in index}

    def drop(m: z3.ModelRef) -> int:
        t = enc.read_state(m, post)
        bad = {j for j in alive if not _holds(model, cand[j], t)}
        if not bad:
            bad = {j for j in alive if z3.is_false(m.eval(post_t[j], model_completion=True))}
        if not bad:
            raise RuntimeError("Z3 found a violation but no lemma is false")
        alive.difference_update(bad)
        if on_drop is not None:
            a = m.eval(enc.act_var(0), model_completion=True).as_long()  # type: ignore[attr-defined]
            on_drop(rounds, [cand[j].name for j in sorted(bad)], model.actions[a].label)
        return len(bad)

    while True:
        s: set[int] = set()
        for g, term in goal_t.items():
            lit = z3.Bool(f"goal#{rounds}#{g}")
            solver.add(z3.Implies(lit, term))
            res = solver.check(*[switch[j] for j in sorted(alive)], lit)
            if res == z3.unsat:
                s |= core()
            elif res == z3.sat and log is not None:
                w = enc.read_state(solver.model(), pre)
                log(f"goal {g} is satisfiable under the {len(alive)} candidates left; the "
                    "witness, as it differs from the fresh state: "
                    + ", ".join(f"{n}={v}" for n, v in w.items() if fresh.get(n) != v))
        if log is not None:
            log(f"targeted Houdini: {len(alive)} candidates, goal cores {len(s)} lemmas, "
                f"{time.perf_counter() - t0:.0f}s")
        dropped = 0
        while s:
            rounds += 1
            lit = z3.Bool(f"step#{rounds}")
            solver.add(z3.Implies(lit, z3.Or(*[z3.Not(post_t[j]) for j in sorted(s)])))
            res = solver.check(*[switch[j] for j in sorted(alive)], lit)
            if res == z3.sat:
                dropped += drop(solver.model())
                s &= alive
                if log is not None:
                    log(f"  round {rounds}: counterexample to induction, {len(s)} in the "
                        f"closure, {len(alive)} candidates left, "
                        f"{time.perf_counter() - t0:.0f}s")
                continue
            if res != z3.unsat:
                if log is not None:
                    log(f"  round {rounds}: Z3 answered {res} ({solver.reason_unknown()}); "
                        "no lemma set")
                return Proof([], rounds, time.perf_counter() - t0, len(cands))
            k = core()
            if log is not None:
                log(f"  round {rounds}: inductive relative to the candidates; the core adds "
                    f"{len(k - s)}, {time.perf_counter() - t0:.0f}s")
            if k <= s:
                break
            s |= k
        if log is not None:
            log(f"  closure: {len(s)} lemmas, {dropped} dropped, round {rounds}")
        if not dropped:
            break
    lemmas = [cand[j] for j in sorted(s)]
    if lemmas and not check_inductive(model, enc, lemmas, timeout_ms):
        raise RuntimeError("targeted Houdini: the lemma set is not inductive")
    return Proof(lemmas, rounds, time.perf_counter() - t0, len(cands) - len(lemmas))
