"""Lockstep testing: Hypothesis drives the model and the implementation together (issue 4).

`lockstep_machine(revision, impl_mutants)` builds a Hypothesis `RuleBasedStateMachine` that
holds a model state and a replay driver (`conformance.replay.Replayer`) on a fresh in-memory
SQLite implementation. Both start at the fresh instance, the state every ITF trace starts
from (the driver creates the instance and runs the create saga's first node, as replay
does); an initialize rule then draws one of the checker's seeds (`model/seeds.py`, `fresh`
first) and takes its steps in lockstep. Each application of the step rule:

1. lists the model actions enabled in the current state, in the model's action order, minus
   those that run into a known divergence (`conformance/divergences.py`, as trace generation
   does) or leave the model's bounds;
2. draws one of them with `st.sampled_from` (a fault, e.g. a crash or failed node, one time
   in four when a normal step is enabled too); Hypothesis shrinks towards earlier seeds,
   earlier actions and shorter runs;
3. applies it to the model (`model.step.apply`) and drives the implementation through the
   same step (`Replayer.step`), which compares the refinement mapping afterwards.

A disagreement fails the run. The steps taken so far, the failing one included, are written
as an ITF trace (`model.trace.write_itf`) to `$LIFECYCLE_LOCKSTEP_DIR` (default
`out/lockstep`), overwriting the file on every failure; Hypothesis replays the shrunk example
last, so the file left behind is the shrunk one. The failure message carries the mismatch,
the path and the command that reruns it (`lifecycle traces replay FILE [--impl-mutant M]`).

Implementation defects (`impl_mutants`) are switched on in the implementation only; the
model runs the plain revision, as `lifecycle traces replay --impl-mutant` does.

Run by hand: `python -m conformance.lockstep --revision rfd486 --examples 200 --steps 60`.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from model.actions import Model, model_for
from model.saga import Action
from model.seeds import SEEDS, expand_step
from model.state import Config
from model.step import ModelBoundExceeded, State, apply
from model.trace import LoadedTrace, write_itf
from model.vocab import MUTANTS, check_mutants, check_revision

from .divergences import divergence_at
from .replay import Mismatch, Replayer, rerun_command

DIR_ENV = "LIFECYCLE_LOCKSTEP_DIR"
DEFAULT_DIR = "out/lockstep"
DB_URL = "sqlite://"
# Hypothesis's explain phase re-runs the shrunk example many times to find the parts that
# do not matter; each run replays the whole trace on a fresh database, so it is left out.
PHASES = (Phase.explicit, Phase.generate, Phase.shrink)


class LockstepFailure(AssertionError):
    """The implementation and the model disagreed; `path` is the trace written for it."""

    def __init__(self, message: str, path: Path, mismatch: Mismatch) -> None:
        super().__init__(message)
        self.path = path
        self.mismatch = mismatch


def lockstep_dir(out_dir: Path | None = None) -> Path:
    """Where failing traces go: `out_dir`, else `$LIFECYCLE_LOCKSTEP_DIR`, else out/lockstep."""
    if out_dir is not None:
        return out_dir
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def trace_name(revision: str, impl_mutants: tuple[str, ...]) -> str:
    return "-".join(["lockstep", revision, *impl_mutants]) + ".itf.json"


FAULT_OUTCOMES = frozenset({"crash", "fail", "ambiguous", "unhealthy", "undo-crash",
                            "undo-unhealthy"})


def is_fault(a: Action) -> bool:
    """A failure injected by the environment: a crash, failed or ambiguous node, a Nexus
    crash, an unreachable or forgetful sled."""
    return (a.arg("outcome") in FAULT_OUTCOMES or a.name == "nexus.crash_and_recover"
            or a.arg("sled") not in (None, "ok"))


def enabled_steps(model: Model, s: State) -> list[tuple[str, State]]:
    """The steps a lockstep run may take from `s`: enabled model actions in the model's
    action order, without those at a known divergence or beyond the model's bounds."""
    out: list[tuple[str, State]] = []
    for i, a in enumerate(model.actions):
        try:
            t = apply(model, i, s)
        except ModelBoundExceeded:
            continue
        if t is not None and divergence_at(a, s) is None:
            out.append((a.label, t))
    return out


def seed_prefixes(model: Model) -> dict[str, list[str]]:
    """The checker's seeds (`model/seeds.py`) as action sequences from the fresh instance,
    keeping those whose every step is enabled and runs into no known divergence; `fresh`
    (the empty prefix) comes first."""
    out: dict[str, list[str]] = {}
    for name, (_desc, labels) in SEEDS.items():
        s = model.layout.fresh_state()
        steps: list[str] = []
        ok = True
        for lab in labels:
            for e in expand_step(model, s, lab):
                i = model.action_index(e)
                t = apply(model, i, s)
                if t is None or divergence_at(model.actions[i], s) is not None:
                    ok = False
                    break
                s = t
                steps.append(e)
            if not ok:
                break
        if ok:
            out[name] = steps
    return dict(sorted(out.items(), key=lambda kv: len(kv[1])))


@lru_cache(maxsize=8)
def _seeds_for(cfg: Config) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((k, tuple(v)) for k, v in seed_prefixes(model_for(cfg)).items())


class LockstepMachine(RuleBasedStateMachine):
    """Base class; `lockstep_machine` fills in the revision, defects and output directory."""

    revision: str = "baseline"
    impl_mutants: tuple[str, ...] = ()
    out_dir: Path | None = None
    seeds: tuple[str, ...] | None = None  # seed names to draw from; None: every usable seed

    def __init__(self) -> None:
        super().__init__()
        cfg = Config(revision=self.revision)
        model = model_for(cfg)
        s0 = model.layout.fresh_state()
        trace = LoadedTrace(cfg, {}, [], [s0], 0)
        self.cfg = cfg
        self.replayer = Replayer(trace, db_url=DB_URL, impl_mutants=self.impl_mutants)
        self.model: Model = self.replayer.model
        self.labels: list[str] = []
        self.states: list[State] = [s0]
        self._choices: list[tuple[str, State]] | None = None
        self._closed = False

    # ------------------------------------------------------------------ rules
    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        """The driver's set-up (create the instance, run the create saga's first node,
        compare), then the steps of a seed drawn from `model/seeds.py` (`fresh`: none)."""
        mm = self.replayer._setup(self.states[0])
        if mm is not None:
            self._fail(mm)
        seeds = {k: v for k, v in _seeds_for(self.cfg)
                 if self.seeds is None or k in self.seeds}
        name = data.draw(st.sampled_from(list(seeds)), label="seed")
        for label in seeds[name]:
            post = apply(self.model, self.model.action_index(label), self.states[-1])
            assert post is not None, f"seed {name}: {label} is not enabled"
            self._take(label, post)

    def _enabled(self) -> list[tuple[str, State]]:
        if self._choices is None:
            self._choices = enabled_steps(self.model, self.states[-1])
        return self._choices

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        """One enabled model action, a fault (crash, failure, ...) one time in four when
        both kinds are enabled, taken by the model and the implementation together."""
        choices = self._enabled()
        if not choices:  # the instance is gone (or a model bound): nothing left to do
            return
        acts = self.model.actions
        faults = [c for c in choices if is_fault(acts[self.model.action_index(c[0])])]
        normal = [c for c in choices if c not in faults]
        pool = normal
        if faults and (not normal or data.draw(st.integers(0, 3), label="fault roll") == 3):
            pool = faults
        label = data.draw(st.sampled_from([lab for lab, _ in pool]), label="action")
        self._take(label, dict(pool)[label])

    def _take(self, label: str, post: State) -> None:
        pre = self.states[-1]
        self.labels.append(label)
        self.states.append(post)
        self._choices = None
        try:
            mm = self.replayer.step(len(self.labels), label, pre, post)
        except Exception as e:  # noqa: BLE001 - e.g. the abstraction query: still a finding
            mm = Mismatch(len(self.labels), label, {},
                          f"replay raised {type(e).__name__}: {e}")
        if mm is not None:
            self._fail(mm)

    def teardown(self) -> None:
        if not self._closed:
            self._closed = True
            self.replayer.ctrl.close(drop_schema=True)

    # ------------------------------------------------------------------ failures
    def _fail(self, mm: Mismatch) -> None:
        path = write_failure(lockstep_dir(self.out_dir), self.cfg, self.model, self.labels,
                             self.states, self.impl_mutants)
        mm.rerun = rerun_command(str(path), DB_URL, self.impl_mutants)
        raise LockstepFailure(
            f"lockstep: the implementation disagrees with the model after "
            f"{len(self.labels)} step(s)\n{mm.render()}\ntrace: {path}", path, mm)


def write_failure(out_dir: Path, cfg: Config, model: Model, labels: list[str],
                  states: list[State], impl_mutants: tuple[str, ...]) -> Path:
    """Write (overwrite) the failing run as an ITF trace; returns its path."""
    path = out_dir / trace_name(cfg.revision, impl_mutants)
    command = rerun_command(str(path), DB_URL, impl_mutants)
    write_itf(path, cfg, model, labels, states, seed=f"lockstep:{cfg.revision}",
              seed_len=0, invariant=None, depth=len(labels), command=command)
    return path


def lockstep_machine(revision: str, impl_mutants: tuple[str, ...] = (),
                     out_dir: Path | None = None,
                     seeds: tuple[str, ...] | None = None) -> type[LockstepMachine]:
    """A lockstep state machine for one protocol revision with the given implementation
    defects switched on (in the implementation only). `out_dir` overrides
    `$LIFECYCLE_LOCKSTEP_DIR` for failing traces; `seeds` restricts the starting points to
    those seeds of `model/seeds.py` (default: every seed usable at this revision)."""
    check_revision(revision)
    muts = check_mutants(impl_mutants)
    not_impl = [m for m in muts if not MUTANTS[m].in_impl]
    if not_impl:
        raise ValueError(f"not implementation defects: {', '.join(not_impl)}")
    usable = dict(_seeds_for(Config(revision=revision)))
    if seeds is not None:
        bad = [n for n in seeds if n not in usable]
        if bad or not seeds:
            raise ValueError(f"unknown or unusable seeds {bad}; usable: {', '.join(usable)}")
    attrs: dict[str, Any] = {"revision": revision, "impl_mutants": muts, "out_dir": out_dir,
                             "seeds": None if seeds is None else tuple(seeds)}
    name = "Lockstep_" + "_".join([revision, *muts]).replace("-", "_")
    return type(name, (LockstepMachine,), attrs)


def run_lockstep(revision: str, impl_mutants: tuple[str, ...] = (), *,
                 max_examples: int = 50, steps: int = 40, derandomize: bool = True,
                 out_dir: Path | None = None, seeds: tuple[str, ...] | None = None) -> None:
    """Run the machine once under Hypothesis; raises `LockstepFailure` on a disagreement
    (after shrinking)."""
    machine = lockstep_machine(revision, impl_mutants, out_dir, seeds)
    run_state_machine_as_test(machine, settings=settings(
        max_examples=max_examples, stateful_step_count=steps, derandomize=derandomize,
        database=None, deadline=None, report_multiple_bugs=False, phases=PHASES,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.lockstep",
                                description="Lockstep Hypothesis run: model vs implementation")
    p.add_argument("--revision", default="baseline")
    p.add_argument("--impl-mutant", action="append", default=[], dest="impl_mutants")
    p.add_argument("--examples", type=int, default=100)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", action="append", default=None, dest="seeds",
                   help="start only from these seeds of model/seeds.py (repeatable)")
    p.add_argument("--random", action="store_true", help="do not derandomize")
    p.add_argument("--out", type=Path, default=None,
                   help=f"directory for failing traces (default ${DIR_ENV} or {DEFAULT_DIR})")
    a = p.parse_args(argv)
    seeds = None if a.seeds is None else tuple(a.seeds)
    try:
        lockstep_machine(a.revision, tuple(a.impl_mutants), a.out, seeds)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        run_lockstep(a.revision, tuple(a.impl_mutants), max_examples=a.examples,
                     steps=a.steps, derandomize=not a.random, out_dir=a.out, seeds=seeds)
    except LockstepFailure as e:
        print(e, file=sys.stderr)
        return 1
    print(f"lockstep {a.revision}: {a.examples} examples of up to {a.steps} steps, "
          "no disagreement")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
