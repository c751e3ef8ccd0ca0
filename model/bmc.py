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


class Checker:
    """Holds the encoding of one configuration and answers bounded queries."""

    def __init__(self, cfg: Config, seeds: list[str] | None = None, por: bool = False) -> None:
        self.cfg = cfg
        self.por = por
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
                m = solver.model()
                trace = self._extract(m, states, acts, t)
                solver.pop()
                broken = [inv for inv in pending if z3.is_false(
                    m.eval(props[inv.id], model_completion=True))]
                if not broken:
                    raise AgreementError("Z3 reported a violation but no property is false")
                for inv in broken:
                    at = first_violation(inv, model, trace)
                    if at != t:
                        raise AgreementError(
                            f"{inv.id}: Z3 counterexample of length {t} fails concretely "
                            f"at step {at}")
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


def _run_one(args: tuple[int, Config, str, int, list[str] | None, bool]) -> Report:
    job, cfg, seed, depth, ids, stop = args
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

    return Checker(cfg, [seed]).run(ids, depth, None, stop, best, found, shortest, found_inv)


# seeds whose queries take longest go first, so two workers finish together: `migrating`
# (which also meets the baseline's shallow findings first, so other seeds stop searching for
# them) and `starting` (the costliest on lifecycle-model/3: 21-29 CPU s at depth 8)
COST_ORDER = ["migrating", "starting", "running", "migration-unwound", "stopping", "stopped",
              "fresh"]


def verify_many(jobs: list[tuple[Config, list[str] | None]], depth: int,
                progress: Callable[[Config, int], None] | None = None,
                seeds: list[str] | None = None, stop_on_violation: bool = False,
                workers: int | None = None) -> list[Report]:
    """Check several configurations; every (configuration, seed) pair is one Z3 query.

    Seeds are independent starting points, so the shortest counterexample overall is the
    shortest one found from any seed, and an invariant holds to `depth` only if it holds from
    every seed. One query per seed is much easier for Z3 than one over the union of the seeds,
    and the queries run in parallel worker processes.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed

    t0 = time.perf_counter()
    names = seeds or list(_seed_names())
    order = sorted(names, key=lambda n: COST_ORDER.index(n) if n in COST_ORDER else 99)
    full = [(cfg, list(ids) if ids else list(INVARIANTS)) for cfg, ids in jobs]
    tasks = [(j, (j, cfg, name, depth, ids, stop_on_violation))
             for name in order for j, (cfg, ids) in enumerate(full)]
    parts: dict[tuple[int, str], Report] = {}
    n = workers or min(2, os.cpu_count() or 1)
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
