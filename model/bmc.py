"""Bounded model checking with Z3.

Paths of up to `depth` steps start from the seed states (see `seeds.py`). The check goes
depth by depth: at each depth one query asks whether any property not yet refuted fails at the
new last step. A model of that query is the shortest counterexample for the properties it
breaks; those are recorded and the query is repeated without them. When the query is
unsatisfiable, every remaining property holds at this depth on every path, and is asserted
as a known fact for the deeper queries (sound: it was just proven for all paths).

Optionally (`Checker(por=True)`, off by default: with Z3 4.15.4 it made the depth-8 query
from the `migrating` seed 34 s instead of 25 s), paths are reduced by partial-order
reduction (`Encoding.order`): two consecutive steps
whose actions are independent (neither writes a variable the other reads or writes) must
come in increasing action order, except for the last step of the path. Reordering
independent neighbours changes neither a path's length nor its end state, so every state
reachable in t steps is still the end of some path of length t, and the free last step
still sees every transition out of it; shortest counterexamples stay shortest.

Every counterexample is replayed through the concrete step function before it is reported:
the states Z3 found must be the states the action definitions compute, and the property must
fail on them. A mismatch is an internal error, never a verdict.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import z3

from .actions import Model, model_for
from .expr import CONCRETE, Z3, Ctx, lift
from .invariants import INVARIANTS, ActView, Invariant
from .seeds import Seed, seed_states
from .state import Config
from .step import State, apply
from .z3enc import Encoding, Substitution

# How `Checker` solves: each check runs this tactic pipeline on the whole unrolled path, from
# scratch. `solve-eqs` turns every next-state variable into its definition and
# `propagate-values` pushes the seed's constants through the path before bit-blasting, which
# an incremental solver cannot do (later steps mention the earlier variables); that outweighs
# re-solving the shallower depths (docs/decisions.md, "Solver").
SOLVER_TACTIC = ("simplify", "propagate-values", "solve-eqs", "simplify", "max-bv-sharing",
                 "bit-blast", "aig", "sat")


def make_solver() -> z3.Solver:
    """The solver for one BMC run (see `SOLVER_TACTIC`)."""
    return z3.Then(*SOLVER_TACTIC).solver()


class AgreementError(RuntimeError):
    """Z3 and the concrete step function disagree: a bug in the tool, not in the protocol."""


@dataclass
class Step:
    action: int  # index into model.actions
    state: State  # the state after the action


@dataclass
class Trace:
    cfg: Config
    seed: Seed
    steps: list[Step]

    def states(self) -> list[State]:
        return [self.seed.state] + [st.state for st in self.steps]


@dataclass
class Verdict:
    invariant: str
    status: str  # "holds" | "violated"
    depth: int  # depth reached (holds) or length of the counterexample (violated)
    seconds: float
    trace: Trace | None = None


@dataclass
class Report:
    cfg: Config
    depth: int
    seeds: list[str]
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    seconds: float = 0.0
    state_vars: int = 0
    actions: int = 0


def eval_concrete(inv: Invariant, model: Model, pre: State | None, act: int | None,
                  post: State) -> bool:
    sizes = model.layout.sizes
    if inv.kind == "step":
        if pre is None or act is None:
            return True
        return bool(inv.fn(Ctx(CONCRETE, pre, sizes), Ctx(CONCRETE, post, sizes),
                           ActView(model, act, CONCRETE), model.cfg, model))
    return bool(inv.fn(Ctx(CONCRETE, post, sizes), model.cfg, model))


def first_violation(inv: Invariant, model: Model, trace: Trace) -> int | None:
    """The index of the first step at which `inv` fails along a concrete trace (0 = seed)."""
    states = trace.states()
    if inv.kind != "step" and not eval_concrete(inv, model, None, None, states[0]):
        return 0
    for i, st in enumerate(trace.steps):
        if not eval_concrete(inv, model, states[i], st.action, st.state):
            return i + 1
    return None


@lru_cache(maxsize=8)
def encoding_for(cfg: Config) -> Encoding:
    """One encoding per configuration and process: worker processes check many seeds."""
    return Encoding(model_for(cfg))


@lru_cache(maxsize=8)
def lemma_support(cfg: Config) -> Callable[[dict[str, Any]], list[z3.BoolRef]] | None:
    """The conformance suite's stored lemmas of this configuration, re-proven inductive now
    (`conformance.goals.support_for`, under half a second), as terms over a state's
    variables; None when there are none (no file, e.g. for any configuration with a defect
    switched on, or none survives the proof).

    They hold in the fresh instance and are preserved by every transition, so they hold in
    every reachable state, and every state of a path from a seed is reachable. Asserting
    them on each state of the unrolled path therefore removes no path the checker must see:
    verdicts and counterexample lengths are the same, and the solver has facts it would
    otherwise have to rediscover (docs/decisions.md, "Proven lemmas prune the bounded
    check")."""
    from conformance.goals import support_for  # the lemmas are stored with the suite

    return support_for(cfg)


class Checker:
    """Holds the encoding of one configuration and answers bounded queries."""

    def __init__(self, cfg: Config, seeds: list[str] | None = None, por: bool = False,
                 lemmas: bool = False) -> None:
        self.cfg = cfg
        self.por = por
        self.support = lemma_support(cfg) if lemmas else None
        self.model = model_for(cfg)
        self.enc = encoding_for(cfg)
        self.seeds = seed_states(self.model, seeds)
        self._templates = self.enc.templates

    def template(self, inv: Invariant) -> z3.BoolRef:
        """The property over the encoding's template variables (cur, act, nxt)."""
        if inv.id not in self._templates:
            sizes = self.model.layout.sizes
            if inv.kind == "step":
                term = inv.fn(Ctx(Z3, self.enc.cur, sizes), Ctx(Z3, self.enc.nxt, sizes),
                              ActView(self.model, self.enc.act, Z3), self.cfg, self.model)
            else:
                term = inv.fn(Ctx(Z3, self.enc.nxt, sizes), self.cfg, self.model)
            self._templates[inv.id] = lift(term)
        return self._templates[inv.id]

    def at_step(self, inv: Invariant, pre: dict[str, Any], act: Any,
                post: dict[str, Any], renaming: Substitution | None = None) -> z3.BoolRef:
        r = renaming or self.enc.renaming(pre, act, post)
        return r(self.template(inv))  # type: ignore[return-value]

    def run(self, invariant_ids: list[str] | None, depth: int,
            progress: Callable[[str, int, dict[str, Verdict]], None] | None = None,
            stop_on_violation: bool = False,
            best: Callable[[], int] | None = None,
            found: Callable[[int], None] | None = None,
            shortest: Callable[[str], int] | None = None,
            found_inv: Callable[[str, int], None] | None = None) -> Report:
        """Check the seeds of this checker to `depth`. With `stop_on_violation`, stop at the
        first counterexample, and also before any depth beyond `best()` (the shortest
        counterexample another seed already found); `found(t)` reports one found here.

        `shortest(id)` is the length of the shortest counterexample of invariant `id` that
        another seed's check has found so far (more than `depth` if none); from that depth on
        this check stops looking for one, since it could not be shorter. `found_inv(id, t)`
        reports one found here. The merged verdict is the same, with less work."""
        t0 = time.perf_counter()
        model, enc = self.model, self.enc
        ids = list(invariant_ids) if invariant_ids else list(INVARIANTS)
        invs = [INVARIANTS[i] for i in ids]
        report = Report(self.cfg, depth, [s.name for s in self.seeds],
                        state_vars=len(model.layout.vars), actions=len(model.actions))

        def settle(inv: Invariant, trace: Trace, n: int) -> None:
            report.verdicts[inv.id] = Verdict(inv.id, "violated", n,
                                              time.perf_counter() - t0, trace)
            if found_inv is not None:
                found_inv(inv.id, n)

        # depth 0: the seeds themselves
        pending: list[Invariant] = []
        for inv in invs:
            bad = [sd for sd in self.seeds
                   if inv.kind != "step" and not eval_concrete(inv, model, None, None, sd.state)]
            if bad:
                settle(inv, Trace(self.cfg, bad[0], []), 0)
            else:
                pending.append(inv)

        solver = make_solver()
        states = [enc.state_vars(0)]
        solver.add(z3.Or(*[enc.equals(states[0], sd.state) for sd in self.seeds]))
        acts: list[Any] = []
        for t in range(1, depth + 1):
            if progress:
                progress("depth", t, report.verdicts)
            if not pending or (stop_on_violation and report.verdicts):
                break
            if stop_on_violation and best is not None and t > best():
                break  # another seed already has a counterexample at least this short
            if shortest is not None:
                # another seed already has a counterexample of at most t steps: none found
                # here from now on could be shorter
                beaten = [inv for inv in pending if shortest(inv.id) <= t]
                if beaten:
                    for inv in beaten:
                        report.verdicts[inv.id] = Verdict(inv.id, "unknown", t - 1,
                                                          time.perf_counter() - t0)
                    pending = [inv for inv in pending if inv not in beaten]
                    if not pending:
                        break
            states.append(enc.state_vars(t))
            acts.append(enc.act_var(t - 1))
            ren = enc.renaming(states[t - 1], acts[t - 1], states[t])
            solver.add(enc.step(states[t - 1], acts[t - 1], states[t], ren))
            if self.support is not None:
                solver.add(*self.support(states[t]))
            if self.por and t >= 3:
                # the last step stays free, so step properties see every transition out of
                # every state reachable in t - 1 steps
                solver.add(enc.order(acts[t - 3], acts[t - 2]))
            all_props = {inv.id: self.at_step(inv, states[t - 1], acts[t - 1], states[t], ren)
                         for inv in pending}
            while pending and not (stop_on_violation and report.verdicts):
                props = {inv.id: all_props[inv.id] for inv in pending}
                solver.push()
                solver.add(z3.Or(*[z3.Not(p) for p in props.values()]))
                res = solver.check()
                if res == z3.unsat:
                    solver.pop()
                    for p in props.values():
                        solver.add(p)
                    break
                if res != z3.sat:
                    solver.pop()
                    raise RuntimeError(f"Z3 answered {res} at depth {t}")
                trace, broken = self.counterexample(solver.model(), states, acts, t,
                                                    pending, props)
                solver.pop()
                for inv in broken:
                    settle(inv, trace, t)
                pending = [inv for inv in pending if inv not in broken]
                if found is not None:
                    found(t)
        reached = len(acts)
        for inv in pending:
            if inv.id in report.verdicts:
                continue
            report.verdicts[inv.id] = Verdict(inv.id, "holds" if reached == depth else "unknown",
                                              reached, time.perf_counter() - t0)
        report.verdicts = {i: report.verdicts[i] for i in ids}
        report.seconds = time.perf_counter() - t0
        return report

    def counterexample(self, m: z3.ModelRef, states: list[dict[str, Any]], acts: list[Any],
                       t: int, invs: list[Invariant], props: dict[str, z3.BoolRef]
                       ) -> tuple[Trace, list[Invariant]]:
        """The trace of Z3's model `m` of a t-step query, and the invariants of `invs` it
        breaks at step t (`props`: each one's term there), each checked to fail concretely at
        exactly that step."""
        trace = self._extract(m, states, acts, t)
        broken = [inv for inv in invs
                  if z3.is_false(m.eval(props[inv.id], model_completion=True))]
        if not broken:
            raise AgreementError("Z3 reported a violation but no property is false")
        for inv in broken:
            at = first_violation(inv, self.model, trace)
            if at != t:
                raise AgreementError(f"{inv.id}: Z3 counterexample of length {t} fails "
                                     f"concretely at step {at}")
        return trace, broken

    def _extract(self, m: z3.ModelRef, states: list[dict[str, Any]], acts: list[Any],
                 t: int) -> Trace:
        model, enc = self.model, self.enc
        s0 = enc.read_state(m, states[0])
        seed = next((sd for sd in self.seeds if sd.state == s0), None)
        if seed is None:
            raise AgreementError("counterexample does not start at a seed state")
        steps: list[Step] = []
        cur = s0
        for i in range(t):
            a = m.eval(acts[i], model_completion=True).as_long()
            nxt = apply(model, a, cur)
            want = enc.read_state(m, states[i + 1])
            if nxt is None:
                raise AgreementError(f"step {i + 1}: {model.actions[a].label} is enabled in "
                                     "Z3 but not in the concrete semantics")
            if nxt != want:
                diff = {k: (nxt[k], want[k]) for k in nxt if nxt[k] != want[k]}
                raise AgreementError(f"step {i + 1}: {model.actions[a].label} gives "
                                     f"different states (concrete, z3): {diff}")
            steps.append(Step(a, nxt))
            cur = nxt
        return Trace(self.cfg, seed, steps)


_SHARED_BEST: Any = None  # per job: the shortest counterexample found so far (worker global)
_SHARED_INV: Any = None  # per job and invariant: the same, per invariant


def _init_worker(shared: Any, per_inv: Any = None) -> None:
    global _SHARED_BEST, _SHARED_INV
    _SHARED_BEST, _SHARED_INV = shared, per_inv


_INV_INDEX = {i: n for n, i in enumerate(INVARIANTS)}


def _run_one(args: tuple[int, Config, str, int, list[str] | None, bool, bool]) -> Report:
    job, cfg, seed, depth, ids, stop, lemmas = args
    shared, per_inv = _SHARED_BEST, _SHARED_INV

    def best() -> int:
        return int(shared[job]) if shared is not None else depth

    def found(t: int) -> None:
        if shared is not None:
            with shared.get_lock():
                shared[job] = min(int(shared[job]), t)

    def slot(inv: str) -> int:
        return job * len(_INV_INDEX) + _INV_INDEX[inv]

    def shortest(inv: str) -> int:
        return int(per_inv[slot(inv)]) if per_inv is not None else depth + 1

    def found_inv(inv: str, t: int) -> None:
        if per_inv is not None:
            with per_inv.get_lock():
                per_inv[slot(inv)] = min(int(per_inv[slot(inv)]), t)

    return Checker(cfg, [seed], lemmas=lemmas).run(ids, depth, None, stop, best, found,
                                                   shortest, found_inv)


@dataclass
class DepthResult:
    """The answer of one (configuration, seed, depth) query of the depth-major search."""

    job: int
    seed: str
    depth: int
    status: str  # "unsat" (nothing fails at this step) | "sat" | "abandoned"
    verdicts: dict[str, Verdict] = field(default_factory=dict)


class Unrolling:
    """One seed's path over fresh variables, extended on demand and kept by a worker process
    for its later queries: the step relations and the properties at every step."""

    def __init__(self, cfg: Config, seed: str) -> None:
        self.cfg = cfg
        self.seed = seed_states(model_for(cfg), [seed])[0]
        self._checker: Checker | None = None  # built at the first symbolic query
        self.states: list[dict[str, Any]] = []
        self.acts: list[Any] = []
        self.init: z3.BoolRef | None = None
        self.steps: list[z3.BoolRef] = []
        self.renamings: list[Substitution] = []
        self.props: dict[tuple[int, str], z3.BoolRef] = {}

    @property
    def checker(self) -> Checker:
        """The checker of this seed; building it builds the configuration's encoding (about a
        second, once per process), which the depth-0 check does not need."""
        if self._checker is None:
            self._checker = Checker(self.cfg, [self.seed.name])
            enc = self._checker.enc
            self.states = [enc.state_vars(0)]
            self.init = z3.Or(enc.equals(self.states[0], self.seed.state))  # as `Checker.run`
        return self._checker

    def extend(self, t: int) -> None:
        """Unroll to `t` steps."""
        enc = self.checker.enc
        while len(self.acts) < t:
            k = len(self.acts) + 1
            self.states.append(enc.state_vars(k))
            self.acts.append(enc.act_var(k - 1))
            ren = enc.renaming(self.states[k - 1], self.acts[k - 1], self.states[k])
            self.renamings.append(ren)
            self.steps.append(enc.step(self.states[k - 1], self.acts[k - 1], self.states[k], ren))

    def prop(self, inv: Invariant, k: int) -> z3.BoolRef:
        """`inv` at step `k` (1 = the first step)."""
        key = (k, inv.id)
        if key not in self.props:
            self.props[key] = self.checker.at_step(inv, self.states[k - 1], self.acts[k - 1],
                                                   self.states[k], self.renamings[k - 1])
        return self.props[key]

    def query(self, ids: list[str], t: int, gone: Callable[[], bool]) -> tuple[str, Any]:
        """Whether some invariant of `ids` fails at step `t` of a path on which all of them
        hold at steps 1..t-1: the same query `Checker.run` asks at depth `t` when no
        shallower depth had a counterexample, built afresh. A query cut short because
        `gone()` turned true answers "abandoned"."""
        invs = [INVARIANTS[i] for i in ids]
        model = model_for(self.cfg)
        if t == 0:
            bad = {inv.id: Verdict(inv.id, "violated", 0, 0.0, Trace(self.cfg, self.seed, []))
                   for inv in invs if inv.kind != "step"
                   and not eval_concrete(inv, model, None, None, self.seed.state)}
            return ("sat", bad) if bad else ("unsat", {})
        self.extend(t)
        solver = make_solver()
        solver.add(self.init)
        for k in range(1, t):
            solver.add(self.steps[k - 1])
            for inv in invs:
                solver.add(self.prop(inv, k))
        solver.add(self.steps[t - 1])
        props = {inv.id: self.prop(inv, t) for inv in invs}
        solver.add(z3.Or(*[z3.Not(p) for p in props.values()]))
        res = _interruptible_check(solver, gone)
        if res is None:
            return "abandoned", {}
        if res == z3.unsat:
            return "unsat", {}
        if res != z3.sat:
            raise RuntimeError(f"Z3 answered {res} at depth {t}")
        trace, broken = self.checker.counterexample(solver.model(), self.states, self.acts,
                                                    t, invs, props)
        return "sat", {inv.id: Verdict(inv.id, "violated", t, 0.0, trace) for inv in broken}


def _interruptible_check(solver: z3.Solver, gone: Callable[[], bool]) -> Any:
    """`solver.check()`, interrupted (answer None) once `gone()` is true; a watcher thread
    polls it while Z3 runs and is joined before this returns, so an interrupt never reaches
    a later query."""
    if gone():
        return None
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            if gone():
                solver.interrupt()  # this query only, and only while it runs
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        res = solver.check()
    except z3.Z3Exception:
        if gone():
            return None
        raise
    finally:
        done.set()
        watcher.join()
    if res == z3.unknown and gone():
        return None
    return res


_UNROLLINGS: dict[tuple[Config, str], Unrolling] = {}  # per worker process


def _run_depth(args: tuple[int, Config, str, int, list[str]]) -> DepthResult:
    """Worker: one depth of one seed (see `Unrolling.query`). The shared per-job value is the
    length of the shortest counterexample found so far; a query at that depth or deeper is
    useless and is abandoned. A counterexample found here lowers the value at once, so the
    other worker stops its now useless query without waiting for the parent process."""
    job, cfg, seed, t, ids = args
    shared = _SHARED_BEST
    if (cfg, seed) not in _UNROLLINGS:
        _UNROLLINGS[(cfg, seed)] = Unrolling(cfg, seed)

    def gone() -> bool:
        return shared is not None and int(shared[job]) <= t

    t0 = time.perf_counter()
    status, verdicts = _UNROLLINGS[(cfg, seed)].query(ids, t, gone)
    if status == "sat" and shared is not None:
        with shared.get_lock():
            shared[job] = min(int(shared[job]), t)
    for v in verdicts.values():
        v.seconds = time.perf_counter() - t0
    return DepthResult(job, seed, t, status, verdicts)


def _worker_loop(conn: Any, shared: Any) -> None:
    """A worker process of `_Workers`: answers queries until told to stop (None)."""
    _init_worker(shared)
    while (task := conn.recv()) is not None:
        try:
            conn.send(_run_depth(task))
        except Exception as e:  # the parent re-raises it
            try:
                conn.send(e)
            except Exception:  # not picklable
                conn.send(RuntimeError(f"{type(e).__name__}: {e}"))


class _Workers:
    """Worker processes, each fed one query at a time by the parent, so the parent can send
    a seed's queries to the worker that already built its unrolling (`_UNROLLINGS`); a
    process pool hands tasks to whichever worker is free."""

    def __init__(self, n: int, shared: Any) -> None:
        self.procs: list[Any] = []
        self.conns: list[Any] = []
        self.running: list[bool] = [False] * n
        for _ in range(n):
            mine, theirs = multiprocessing.Pipe()
            proc = multiprocessing.Process(target=_worker_loop, args=(theirs, shared),
                                           daemon=True)
            proc.start()
            theirs.close()
            self.procs.append(proc)
            self.conns.append(mine)

    def __enter__(self) -> _Workers:
        return self

    def idle(self) -> list[int]:
        return [w for w, r in enumerate(self.running) if not r]

    def busy(self) -> bool:
        return any(self.running)

    def send(self, w: int, task: tuple[int, Config, str, int, list[str]]) -> None:
        self.conns[w].send(task)
        self.running[w] = True

    def results(self) -> list[DepthResult]:
        """Wait for at least one busy worker's answer; a worker's exception is raised here."""
        from multiprocessing.connection import wait

        busy = [self.conns[w] for w in range(len(self.conns)) if self.running[w]]
        out: list[DepthResult] = []
        ready: list[Any] = wait(busy)
        for conn in ready:
            w = self.conns.index(conn)
            try:
                res = conn.recv()
            except EOFError:
                raise RuntimeError("a checker worker process died") from None
            self.running[w] = False
            if isinstance(res, BaseException):
                raise res
            out.append(res)
        return out

    def __exit__(self, *exc: object) -> None:
        for w, conn in enumerate(self.conns):
            try:
                if self.running[w]:  # only after an error: its query is dropped
                    self.procs[w].kill()
                else:
                    conn.send(None)
            except OSError:
                pass
        for proc, conn in zip(self.procs, self.conns, strict=True):
            proc.join()
            conn.close()


def _cheap_first(names: list[str]) -> list[str]:
    """Seeds from the cheapest query to the costliest (`COST_ORDER` reversed; unknown seeds,
    the opt-in ones with many sagas in flight, last)."""
    rank = {n: i for i, n in enumerate(reversed(COST_ORDER))}
    return sorted(names, key=lambda n: rank.get(n, len(rank)))


def _first_counterexample(full: list[tuple[Config, list[str]]], depth: int, names: list[str],
                          progress: Callable[[Config, int], None] | None,
                          workers: int) -> list[Report]:
    """`verify_many(stop_on_violation=True)`: a shortest counterexample, searched depth by
    depth across all seeds at once.

    Each (seed, depth) query is independent of the others: it assumes the invariants at the
    shallower steps, which is sound once those depths are proven, and when they are not, a
    shorter counterexample exists and wins anyway. So a worker takes the shallowest query not
    yet handed out, and may run ahead of a seed's unfinished shallower depth. Within a depth
    the first worker goes from the cheapest seed to the costliest and the second the other
    way round, so a counterexample at the last depth is met early wherever it lies, and the
    two meet in the middle.

    A counterexample of t steps is a shortest one once every seed is proven to have none of
    t - 1 steps: the job then ends. Queries at depth t or deeper still running are abandoned
    (stopped mid-solve) as soon as one is found, so the violated invariants reported are
    those of the counterexample found first (with those of any other query of the same depth
    that finished meanwhile). Invariants not violated are "unknown", with the depth every seed
    was proven to, or "holds" when there is no counterexample within `depth`."""
    t0 = time.perf_counter()
    order = _cheap_first(names)
    rank = {n: i for i, n in enumerate(order)}
    nj = len(full)
    best = [depth + 1] * nj  # per job: the length of the shortest counterexample found
    shared = multiprocessing.Array("i", best)  # the same, for the workers
    keys = [(j, s) for j in range(nj) for s in names]
    started = dict.fromkeys(keys, -1)  # the deepest depth handed out, per (job, seed)
    redo: dict[tuple[int, str], set[int]] = {k: set() for k in keys}  # abandoned too early
    unsat: dict[tuple[int, str], set[int]] = {k: set() for k in keys}
    proven = dict.fromkeys(keys, -1)  # every depth up to this one has no counterexample
    found: list[dict[str, Verdict]] = [{} for _ in range(nj)]
    finished = [False] * nj
    settled = [0] * nj

    def next_task(w: int) -> tuple[int, Config, str, int, list[str]] | None:
        """For worker `w`: the shallowest query still useful and not handed out; within a
        depth the cheapest seed first, or for odd `w` the costliest."""
        pick: tuple[int, int, int, str] | None = None
        for (j, s), st in started.items():
            t = min(redo[(j, s)]) if redo[(j, s)] else st + 1
            cand = (t, rank[s] if w % 2 == 0 else -rank[s], j, s)
            if not finished[j] and t <= depth and t < best[j] and (pick is None
                                                                  or cand < pick):
                pick = cand
        if pick is None:
            return None
        t, _, j, s = pick
        if t in redo[(j, s)]:
            redo[(j, s)].discard(t)
        else:
            started[(j, s)] = t
        return (j, full[j][0], s, t, full[j][1])

    def take(res: DepthResult) -> None:
        j, key = res.job, (res.job, res.seed)
        if res.status == "abandoned":
            if res.depth < best[j]:  # stopped by a counterexample this process has not seen
                redo[key].add(res.depth)
        elif res.status == "unsat":
            unsat[key].add(res.depth)
            while proven[key] + 1 in unsat[key]:
                proven[key] += 1
        elif res.depth <= best[j]:
            if res.depth < best[j]:
                best[j], found[j] = res.depth, {}
                with shared.get_lock():
                    shared[j] = min(int(shared[j]), best[j])
            for inv, v in res.verdicts.items():
                found[j].setdefault(inv, v)

    def update(j: int) -> None:
        if finished[j]:
            return
        need = min(best[j], depth + 1) - 1  # every seed proven to this depth
        done = sum(1 for s in names if proven[(j, s)] >= need)
        if done != settled[j]:
            settled[j] = done
            if progress:
                progress(full[j][0], done)
        finished[j] = done == len(names)

    n = max(1, workers)
    if n == 1:
        _init_worker(shared)
        try:
            while (task := next_task(0)) is not None:
                take(_run_depth(task))
                update(task[0])
        finally:
            _init_worker(None)
            _UNROLLINGS.clear()
    else:
        with _Workers(n, shared) as pool:
            while True:
                for w in pool.idle():
                    if (task := next_task(w)) is not None:
                        pool.send(w, task)
                if not pool.busy():
                    break
                for res in pool.results():
                    take(res)
                    update(res.job)
    out = []
    for j, (cfg, ids) in enumerate(full):
        model = model_for(cfg)
        merged = Report(cfg, depth, names, state_vars=len(model.layout.vars),
                        actions=len(model.actions))
        reached = max(0, min(proven[(j, s)] for s in names))
        for inv in ids:
            if inv in found[j]:
                merged.verdicts[inv] = found[j][inv]
            else:
                status = "holds" if reached == depth else "unknown"
                merged.verdicts[inv] = Verdict(inv, status, reached, time.perf_counter() - t0)
        merged.seconds = time.perf_counter() - t0
        out.append(merged)
    return out


# seeds whose queries take longest go first, so two workers finish together: `migrating`
# (which also meets the baseline's shallow findings first, so other seeds stop searching for
# them) and `starting` (the costliest on lifecycle-model/3: 21-29 CPU s at depth 8)
COST_ORDER = ["migrating", "starting", "running", "migration-unwound", "stopping", "stopped",
              "fresh"]


def verify_many(jobs: list[tuple[Config, list[str] | None]], depth: int,
                progress: Callable[[Config, int], None] | None = None,
                seeds: list[str] | None = None, stop_on_violation: bool = False,
                workers: int | None = None, lemmas: bool = True) -> list[Report]:
    """Check several configurations; every (configuration, seed) pair is one Z3 query.

    Seeds are independent starting points, so the shortest counterexample overall is the
    shortest one found from any seed, and an invariant holds to `depth` only if it holds from
    every seed. One query per seed is much easier for Z3 than one over the union of the seeds,
    and the queries run in parallel worker processes.

    With `stop_on_violation` the search is depth-major instead (`_first_counterexample`):
    every seed's depth t is checked before any seed's depth t + 1 is needed, so the run ends
    once the shortest counterexample is certain rather than after the costliest seeds have
    been taken deeper.

    With `lemmas` (default) the per-seed checks assert the stored, re-proven lemmas on every
    state of the path (`lemma_support`); the depth-major search does not.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed

    t0 = time.perf_counter()
    names = seeds or list(_seed_names())
    order = sorted(names, key=lambda n: COST_ORDER.index(n) if n in COST_ORDER else 99)
    full = [(cfg, list(ids) if ids else list(INVARIANTS)) for cfg, ids in jobs]
    n = workers or min(2, os.cpu_count() or 1)
    if stop_on_violation:
        return _first_counterexample(full, depth, names, progress, n)
    tasks = [(j, (j, cfg, name, depth, ids, stop_on_violation, lemmas))
             for name in order for j, (cfg, ids) in enumerate(full)]
    parts: dict[tuple[int, str], Report] = {}
    shared = multiprocessing.Array("i", [depth] * len(full))
    per_inv = multiprocessing.Array("i", [depth + 1] * (len(full) * len(INVARIANTS)))
    if n <= 1 or len(tasks) == 1:
        _init_worker(shared, per_inv)
        for j, tk in tasks:
            parts[(j, tk[2])] = _run_one(tk)
            if progress:
                progress(full[j][0], sum(1 for k in parts if k[0] == j))
        _init_worker(None)
    else:
        with ProcessPoolExecutor(max_workers=n, initializer=_init_worker,
                                 initargs=(shared, per_inv)) as ex:
            futs = {ex.submit(_run_one, tk): (j, tk[2]) for j, tk in tasks}
            for f in as_completed(futs):
                parts[futs[f]] = f.result()
                j = futs[f][0]
                if progress:
                    progress(full[j][0], sum(1 for k in parts if k[0] == j))
    out = []
    for j, (cfg, ids) in enumerate(full):
        model = model_for(cfg)
        merged = Report(cfg, depth, names, state_vars=len(model.layout.vars),
                        actions=len(model.actions))
        for inv in ids:
            found = [parts[(j, nm)].verdicts[inv] for nm in names
                     if parts[(j, nm)].verdicts[inv].status == "violated"]
            if found:
                merged.verdicts[inv] = min(found, key=lambda v: v.depth)
            else:
                reached = min(parts[(j, nm)].verdicts[inv].depth for nm in names)
                status = "holds" if reached == depth else "unknown"
                merged.verdicts[inv] = Verdict(inv, status, reached,
                                               max(parts[(j, nm)].seconds for nm in names))
        merged.seconds = time.perf_counter() - t0
        out.append(merged)
    return out


def verify(cfg: Config, depth: int, invariant_ids: list[str] | None = None,
           progress: Callable[[str, int, dict[str, Verdict]], None] | None = None,
           seeds: list[str] | None = None, stop_on_violation: bool = False,
           workers: int | None = None) -> Report:
    """Check one configuration (see `verify_many`)."""
    cb = None if progress is None else (lambda c, k: progress("seed", k, {}))
    return verify_many([(cfg, invariant_ids)], depth, cb, seeds, stop_on_violation,
                       workers)[0]


def _seed_names() -> list[str]:
    from .seeds import SEEDS

    return list(SEEDS)
