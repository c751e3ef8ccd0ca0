"""History validation: is every recorded step a transition of the model?

For each step of each instance (conformance/history_steps.py) Z3 is asked whether some state
pair and some action with the recorded name satisfy the model's one-step relation T(s, a, s')
with the observed variables of s and s' equal to the recorded ones: the disjunction, over the
candidate actions, of each one's guard and effects (`Encoding.guards`, `Encoding.effects`),
with the recorded constants substituted in. Everything the history does not record (saga
slots and their logs, sled-agent view, reports in flight, id bookkeeping) is an unknown to
solve for, independently at every step. Answers are memoized by the abstract step (observed
values before and after, action name), which repeat a lot.

A step no action explains is reported with, per candidate action, the guard conjuncts and
recorded values that rule it out (an unsat core over tracked assertions, from
`Encoding.guard_parts`), and, for the best candidate (one that can be enabled, then the
smallest core), the nearest state pair the action can take (fewest observed values differing
from the record, found with Z3's Optimize) as a diff. docs/history-validation.md has the rest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import z3

from model.actions import Model, model_for
from model.expr import WIDTH, lift
from model.state import Config
from model.z3enc import Encoding, to_z3

from .history_divergences import HistoryDivergence, alternatives
from .history_file import Event, History, gc_paused
from .history_steps import (
    BoundExceeded,
    Obs,
    Step,
    appearance_order,
    legacy_join,
    needed_bounds,
    observed_names,
    project,
    project_values,
    splits,
    start_step,
    steps_of,
)
from .history_steps import legend as step_legend
from .nodes import GROUPS
from .refinement import describe

MAX_SLOTS = 6
# model actions the implementation runs as several transactions: node groups
# (conformance/nodes.py) and the reaper's reservation delete + soft delete (two transactions
# in impl/background/abandoned_vmm_reaper.py)
SPLIT_NODES = frozenset({f"{saga}.{node}" for saga, groups in GROUPS.items()
                         for node, members in groups.items() if len(members) > 1}
                        | {"abandoned-vmm-reaper.reap"})
INIT_LABEL = "instance-create.CREATE_INSTANCE_RECORD"


@dataclass
class Unexplained:
    """The first step no action of the model explains."""

    event: Event  # the last event of the step
    first: Event
    label: str
    reason: str
    legend: dict[str, str]
    cores: list[tuple[str, list[str]]] = field(default_factory=list)  # action label -> core
    nearest_action: str | None = None
    diff: list[tuple[str, str, str, str]] = field(default_factory=list)  # var, when, rec, model

    def summary(self) -> str:
        """One line: the event and why no model action explains it."""
        return (f"event seq {self.event.seq} ({self.label}) is not a transition of the model: "
                f"{self.reason}")


@dataclass
class Result:
    events: int
    steps: int
    distinct: int  # abstract steps sent to Z3 (not already in the process's memo)
    config: Config
    failure: Unexplained | None = None
    divergences: Counter[str] = field(default_factory=Counter)  # steps a known one explained


_ENCODINGS: dict[Config, Encoding] = {}
_CHECKERS: dict[Config, StepChecker] = {}


def _cached_encoding(cfg: Config) -> Encoding:
    if cfg not in _ENCODINGS:
        _ENCODINGS[cfg] = Encoding(model_for(cfg))
    return _ENCODINGS[cfg]


def checker_for(cfg: Config) -> StepChecker:
    """One checker per configuration and process, so its memo serves every history."""
    if cfg not in _CHECKERS:
        _CHECKERS[cfg] = StepChecker(cfg)
    return _CHECKERS[cfg]


class StepChecker:
    """Z3 queries for one model configuration, with memoized answers."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.enc = _cached_encoding(cfg)
        self.model: Model = self.enc.model
        self.names = observed_names(cfg.vmms, cfg.migrations)
        self.solver = z3.Solver()
        self.memo: dict[tuple[Obs, Obs, str], bool] = {}
        self._eq: dict[tuple[bool, str, int | bool], z3.BoolRef] = {}
        self._cands: dict[str, list[int]] = {}
        self._partial: dict[tuple[int, bool], z3.BoolRef] = {}
        self._whole: dict[int, z3.BoolRef] = {}
        fresh = self.model.layout.fresh_state()
        self.fresh: Obs = tuple(fresh[n] for n in self.names)
        # `_check`'s substitution, done with Z3's C API: the template variables (observed
        # ones before, then after) are fixed; the values are constants made once each
        enc, lay, k = self.enc, self.enc.layout, len(self.names)
        self._ctx = enc.cur[self.names[0]].ctx
        self._src = (z3.z3core.Ast * (2 * k))()
        for j, n in enumerate(self.names):
            self._src[j] = enc.cur[n].as_ast()
            self._src[k + j] = enc.nxt[n].as_ast()
        self._is_bool = tuple(lay.kind(n) == "bool" for n in self.names)
        self._consts: dict[tuple[bool, int | bool], z3.ExprRef] = {}  # keeps the ASTs alive
        self._const_ast: dict[tuple[bool, int | bool], Any] = {}
        # per action: positions of the observed variables its effects may change, and its
        # guard with the equations of just those variables after the step
        self._wpos: list[frozenset[int]] = [
            frozenset(j for j, n in enumerate(self.names) if n in eff) for eff in enc.effects]
        self._written: dict[int, z3.BoolRef] = {}
        self._survivors: dict[tuple[int, ...], z3.BoolRef] = {}

    def candidates(self, label: str) -> list[int]:
        """Per `|`-separated alternative: the actions with this name; else those whose name
        extends it (`instance-watcher` -> `.poll`, `.vmm_gone`); `unknown`: every action.
        A name the model does not have (e.g. the undo of a node the model gives no undo)
        has no candidates, so its writes are unexplained."""
        if label not in self._cands:
            acts = self.model.actions
            out: set[int] = set()
            for alt in label.split("|"):
                if alt == "unknown":  # a write the recorder could not attribute
                    out.update(range(len(acts)))
                    continue
                exact = [i for i, a in enumerate(acts) if a.name == alt]
                longer = [i for i, a in enumerate(acts) if a.name.startswith(alt + ".")
                          and not a.name.endswith(".undo")]
                out.update(exact or longer)
            self._cands[label] = sorted(out)
        return self._cands[label]

    def _equal(self, after: bool, name: str, value: int | bool) -> z3.BoolRef:
        k = (after, name, value)
        e = self._eq.get(k)
        if e is None:
            v = (self.enc.nxt if after else self.enc.cur)[name]
            e = self._eq[k] = v == to_z3(self.enc.layout, name, value)
        return e

    def _full(self, i: int) -> z3.BoolRef:
        """Action `i`'s guard and its effect on the observed variables (the other variables
        after the step are unconstrained unknowns, so their equations can be left out)."""
        f = self._whole.get(i)
        if f is None:
            enc = self.enc
            f = self._whole[i] = z3.And([enc.guards[i]] + [
                enc.nxt[n] == enc.effects[i].get(n, enc.cur[n]) for n in self.names])
        return f

    def _const(self, is_bool: bool, value: int | bool) -> Any:
        """The AST of a Z3 constant (as `to_z3` makes it), made once per process."""
        key = (is_bool, value)
        a = self._const_ast.get(key)
        if a is None:
            c = self._consts[key] = (z3.BoolVal(bool(value), self._ctx) if is_bool else
                                     z3.BitVecVal(int(value), WIDTH, self._ctx))
            a = self._const_ast[key] = c.as_ast()
        return a

    def _check(self, formula: z3.BoolRef, pre: Obs, post: Obs) -> bool:
        """Is `formula` satisfiable with the observed variables fixed to pre / post?"""
        const, bools = self._const, self._is_bool
        dst = (z3.z3core.Ast * len(self._src))(
            *[const(b, a) for b, a in zip(bools, pre, strict=True)],
            *[const(b, a) for b, a in zip(bools, post, strict=True)])
        ctx = self._ctx
        ref = z3.z3core.Z3_substitute(ctx.ref(), formula.as_ast(), len(self._src), self._src,
                                      dst)
        g = z3.simplify(z3.z3._to_expr_ref(ref, ctx))
        if z3.is_false(g):
            return False
        if z3.is_true(g):
            return True
        self.solver.push()
        self.solver.add(g)
        ok = self.solver.check() == z3.sat
        self.solver.pop()
        return ok

    def explains_reference(self, pre: Obs, post: Obs, label: str) -> bool:
        """`explains` asked of Z3 in one piece, without the memo (for tests)."""
        return self._check(z3.Or([self._full(i) for i in self.candidates(label)]
                                 or [z3.BoolVal(False)]), pre, post)

    def _guarded_writes(self, i: int) -> z3.BoolRef:
        """Action `i`'s guard and its effect on the observed variables it may change; that it
        leaves the others unchanged is checked in Python (`explains`)."""
        f = self._written.get(i)
        if f is None:
            enc = self.enc
            f = self._written[i] = z3.And([enc.guards[i]] + [
                enc.nxt[n] == enc.effects[i][n] for n in self.names if n in enc.effects[i]])
        return f

    def explains(self, pre: Obs, post: Obs, label: str) -> bool:
        """Some action named `label` takes the recorded observed values to the recorded ones.

        The same question as `_full` asks of every candidate, in two parts: an action whose
        effects cannot change an observed variable the step changed is ruled out in Python;
        Z3 gets the guard and the writes of the others (`_guarded_writes`)."""
        key = (pre, post, label)
        hit = self.memo.get(key)
        if hit is None:
            changed = frozenset(j for j, (a, b) in enumerate(zip(pre, post, strict=True))
                                if a != b)
            wpos = self._wpos
            live = tuple(i for i in self.candidates(label) if changed <= wpos[i])
            if not live:
                hit = self.memo[key] = False
                return hit
            f = self._survivors.get(live)
            if f is None:
                f = self._survivors[live] = z3.Or([self._guarded_writes(i) for i in live])
            hit = self.memo[key] = self._check(f, pre, post)
        return hit

    def _partly(self, i: int, guarded: bool = True) -> z3.BoolRef:
        """Action `i` with each observed write either done or not yet done (and without
        its guard unless `guarded`)."""
        f = self._partial.get((i, guarded))
        if f is None:
            enc = self.enc
            parts = [enc.guards[i] if guarded else z3.BoolVal(True)]
            for n in self.names:
                rhs = enc.effects[i].get(n)
                parts.append(enc.nxt[n] == enc.cur[n] if rhs is None else
                             z3.Or(enc.nxt[n] == enc.cur[n], enc.nxt[n] == rhs))
            f = self._partial[(i, guarded)] = z3.And(parts)
        return f

    def explains_partly(self, pre: Obs, post: Obs, label: str, guarded: bool = True) -> bool:
        """Some action named `label` did part of its observed writes (a split model step
        seen half done, the other half done later by it or by another writer)."""
        key = (pre, post, f"partly:{guarded}:{label}")
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        f = z3.Or([self._partly(i, guarded) for i in self.candidates(label)
                   if _split(self.model.actions[i].name)] or [z3.BoolVal(False)])
        ok = self.memo[key] = self._check(f, pre, post)
        return ok

    # ------------------------------------------------------------------ failures
    def core(self, i: int, pre: Obs, post: Obs) -> list[str]:
        """Guard conjuncts that disable action `i` in every state with the recorded values
        before the step; or, when it can be enabled, the guard conjuncts and recorded values
        after the step that together rule it out."""
        enc = self.enc
        s = z3.Solver()
        s.set(unsat_core=True)
        for n, a in zip(self.names, pre, strict=True):
            s.add(self._equal(False, n, a))
        tags: dict[str, str] = {}
        for k, (lab, g) in enumerate(enc.guard_parts[i]):
            t = f"g{k}"
            tags[t] = f"guard: {lab or '(unlabelled conjunct)'}"
            s.assert_and_track(lift(g), t)
        if s.check() == z3.unsat:  # not enabled in any state with the recorded values
            return sorted({tags[str(c)] for c in s.unsat_core()})
        for k, (n, b) in enumerate(zip(self.names, post, strict=True)):
            rhs = enc.effects[i].get(n, enc.cur[n])
            t = f"e{k}"
            tags[t] = f"after: {n} = {describe(n, b)}" + (
                "" if n in enc.effects[i] else " (the action leaves it unchanged)")
            s.assert_and_track(rhs == to_z3(enc.layout, n, b), t)
        if s.check() != z3.unsat:
            return []
        return sorted({tags[str(c)] for c in s.unsat_core()})

    def nearest(self, i: int, pre: Obs, post: Obs) -> list[tuple[str, str, str, str]]:
        """The state pair action `i` can take that differs least from the record."""
        enc = self.enc
        o = z3.Optimize()
        o.add(enc.guards[i])
        for n in self.names:
            o.add(enc.nxt[n] == enc.effects[i].get(n, enc.cur[n]))
        for n, a, b in zip(self.names, pre, post, strict=True):
            o.add_soft(self._equal(False, n, a))
            o.add_soft(self._equal(True, n, b))
        if o.check() != z3.sat:
            return [("(action never enabled)", "", "", "")]
        m = o.model()
        out = []
        for n, a, b in zip(self.names, pre, post, strict=True):
            for when, rec, var in (("before", a, enc.cur[n]), ("after", b, enc.nxt[n])):
                got = m.eval(var, model_completion=True)
                val: int | bool = z3.is_true(got) if isinstance(rec, bool) else got.as_long()  # type: ignore[attr-defined]
                if val != rec:
                    out.append((n, when, describe(n, rec), describe(n, val)))
        return out

    def explain(self, step: Step, pre: Obs, post: Obs, legend: dict[str, str]) -> Unexplained:
        cands = self.candidates(step.label)
        cores = [(self.model.actions[i].label, self.core(i, pre, post), i) for i in cands]
        # actions that can be enabled first, then the smallest core
        cores.sort(key=lambda c: (all(p.startswith("guard:") for p in c[1]), len(c[1])))
        best = cores[0][2] if cores else None
        reason = (f"no action named {step.label!r} ({len(cands)} candidates) explains the "
                  "recorded change" if cands else
                  f"the model has no action named {step.label!r}, and the step changes records")
        u = Unexplained(step.last, step.first, step.label, reason, legend,
                        [(lab, core) for lab, core, _ in cores])
        if best is not None:
            u.nearest_action = self.model.actions[best].label
            u.diff = self.nearest(best, pre, post)
        return u


def validate(history: History, revision: str | None = None) -> Result:
    """Check every step of `history`, in seq order; stop at the first unexplained one."""
    with gc_paused():
        return _validate(history, revision)


def _validate(history: History, revision: str | None) -> Result:
    per = history.by_instance()
    orders = {iid: appearance_order(evs) for iid, evs in per.items()}
    lists = {iid: steps_of(evs, orders[iid]) for iid, evs in per.items()}
    starts = {iid: start_step(evs, orders[iid]) for iid, evs in per.items()}
    nv, nm = needed_bounds([s for ss in lists.values() for s in ss] + list(starts.values()))
    base = Config(revision=revision or history.revision)
    cfg = Config(revision=base.revision, vmms=min(MAX_SLOTS, max(base.vmms, nv)),
                 migrations=min(MAX_SLOTS, max(base.migrations, nm)))
    chk = checker_for(cfg)
    memo0 = len(chk.memo)
    # (seq, instance, step index; -1 = first event), in commit order; every entry's seq is
    # a different event's (a step ends at its last event, never an instance's first)
    order: list[tuple[int, str, int]] = []
    for iid, evs in per.items():
        order.append((evs[0].seq, iid, -1))
        order += [(s.last.seq, iid, k) for k, s in enumerate(lists[iid])]
    order.sort()
    n_steps = 0
    divergences: Counter[str] = Counter()
    memo = chk.memo
    nv_, nm_ = cfg.vmms, cfg.migrations

    def done(failure: Unexplained | None) -> Result:
        return Result(len(history.events), n_steps, len(chk.memo) - memo0, cfg, failure,
                      divergences)

    for _seq, iid, idx in order:
        if idx >= 0:  # the common case, inline: a step whose answer is memoized
            step = lists[iid][idx]
            try:
                pre, post = project_values(step, nv_, nm_)
            except BoundExceeded:
                pass  # reported below
            else:
                if pre == post or memo.get((pre, post, step.label)):
                    n_steps += 1
                    continue
        if idx < 0:  # the instance's first event: the fresh instance, if recorded
            first = per[iid][0]
            if first.label != INIT_LABEL:
                continue
            try:
                obs, _, legend = project(starts[iid], cfg.vmms, cfg.migrations)
            except BoundExceeded as e:
                return done(Unexplained(first, first, first.label, str(e), {}))
            if obs != chk.fresh:
                diff = [(n, "after", describe(n, a), describe(n, b))
                        for n, a, b in zip(chk.names, obs, chk.fresh, strict=True) if a != b]
                return done(Unexplained(first, first, first.label, "the created instance is "
                                        "not the model's fresh instance", legend, diff=diff))
            continue
        step = lists[iid][idx]
        n_steps += 1
        try:
            pre, post = project_values(step, cfg.vmms, cfg.migrations)
        except BoundExceeded as e:
            return done(Unexplained(step.last, step.first, step.label, str(e), {}))
        if _explained(chk, step, pre, post, divergences):
            continue
        if legacy_join(step) and _explained_in_pieces(chk, per[iid], orders[iid], step,
                                                      divergences):
            continue
        return done(chk.explain(step, pre, post, step_legend(step)))
    return done(None)


def _explained(chk: StepChecker, step: Step, pre: Obs, post: Obs,
               divergences: Counter[str]) -> bool:
    """Some action with the step's label, a partial split step, or a known divergence
    explains the step (counted in `divergences`)."""
    if pre == post or chk.explains(pre, post, step.label):
        return True
    if _split(step.label) and chk.explains_partly(pre, post, step.label):
        return True
    div = next((d for d in alternatives(chk.cfg.revision, step.label)
                if _diverges(chk, d, pre, post)), None)
    if div is not None:
        divergences[div.name] += 1
        return True
    return False


def _explained_in_pieces(chk: StepChecker, events: list[Event], order: dict[str, int],
                         step: Step, divergences: Counter[str]) -> bool:
    """A step joined under a key without an execution number (`legacy_join`) that is
    several model steps: a node and its re-executions. Accepted when some cut into
    consecutive steps has every piece explained on its own."""
    nv, nm = chk.cfg.vmms, chk.cfg.migrations
    for pieces in splits(events, order, step):
        counted: Counter[str] = Counter()
        try:
            vals = [project_values(p, nv, nm) for p in pieces]
        except BoundExceeded:
            continue
        if all(_explained(chk, p, a, b, counted) for p, (a, b) in zip(pieces, vals,
                                                                      strict=True)):
            divergences.update(counted)
            return True
    return False


def _diverges(chk: StepChecker, d: HistoryDivergence, pre: Obs, post: Obs) -> bool:
    """Does known divergence `d` explain the step?"""
    if d.stale_guard:
        return chk.explains_partly(pre, post, d.instead, guarded=False)
    return chk.explains(pre, post, d.instead)


def _split(label: str) -> bool:
    return any(alt.removesuffix(".undo") in SPLIT_NODES for alt in label.split("|"))
