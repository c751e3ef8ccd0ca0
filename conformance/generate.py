"""Generation of the conformance suite from the model (issue 4, part 1).

Seeded random walks over the model's concrete step function (`model/step.py`), steered
towards coverage goals (`conformance/coverage.py`): at each step, an enabled action that
covers a goal not yet covered is preferred, and each walk continues a prefix found earlier
(go-explore: the least-chosen coarse state of an archive). Finally every action still
uncovered is tried after each stored prefix, shortest first ("last mile"). A walk is cut after the last step
that covered a new goal and written as an ITF trace (prefix included); walks that cover
nothing new are dropped, so every trace in the suite is distinct and covers at least one goal
first. The hand-written traces of `conformance/scenarios.py` are always included.
Steps that run into a known divergence (`conformance/divergences.py`) are never taken.
The same seed gives the same suite.

Not done (yet): Z3-directed search for goals the walks miss, and proofs that the remaining
goals are unreachable; goals not covered are reported as "not covered", not as unreachable.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from model.actions import Model, model_for
from model.seeds import SEEDS
from model.state import Config
from model.step import ModelBoundExceeded, State, apply, successors
from model.trace import write_itf
from model.vocab import MUTANTS

from .coverage import TeethGoals, all_action_goals, goals_of_step, pair_of
from .divergences import divergence_at
from .scenarios import DIRECTED


@dataclass
class Walk:
    labels: list[str]
    states: list[State]
    new_goals: list[str]


@dataclass
class Suite:
    cfg: Config
    walks: list[Walk] = field(default_factory=list)
    covered: dict[str, int] = field(default_factory=dict)  # goal -> index of the first walk

    def action_coverage(self, model: Model) -> tuple[int, int]:
        goals = all_action_goals(model)
        return sum(g in self.covered for g in goals), len(goals)

    def teeth(self) -> list[str]:
        return sorted(g.removeprefix("teeth:") for g in self.covered if g.startswith("teeth:"))

    def pairs(self) -> list[str]:
        return sorted(g for g in self.covered if g.startswith("pair:"))


def _cell(s: State) -> tuple[object, ...]:
    """A coarse abstraction of a state, used to pick diverse places to continue from."""
    return tuple(int(v) for k, v in sorted(s.items())
                 if k.startswith(("i_state", "i_active", "i_mig", "i_updater", "v_state",
                                  "m_src_st", "m_tgt_st", "sa_state"))
                 or k.endswith(("_mode", "_mode.0", "_mode.1")))


def _walk(model: Model, rng: random.Random, start: Walk, length: int,
          covered: dict[str, int], greed: float, teeth: TeethGoals) -> Walk:
    """Continue `start` by up to `length` random steps; cut after the last new goal."""
    s = start.states[-1]
    labels = list(start.labels)
    states = list(start.states)
    seen: set[str] = set()
    new: list[str] = []
    last_new = 0
    for _ in range(length):
        try:
            succ = list(successors(model, s))
        except ModelBoundExceeded:
            break
        succ = [(i, t) for i, t in succ if divergence_at(model.actions[i], s) is None]
        if not succ:
            break
        goals = {i: goals_of_step(model, model.actions[i].label, t)
                 | teeth.goals(model.actions[i].label, s, t, covered.keys() | seen)
                 for i, t in succ}
        fresh = [(i, t) for i, t in succ
                 if any(g not in covered and g not in seen for g in goals[i])]
        i, t = rng.choice(fresh if fresh and rng.random() < greed else succ)
        label = model.actions[i].label
        labels.append(label)
        states.append(t)
        s = t
        gained = [g for g in sorted(goals[i]) if g not in covered and g not in seen]
        if gained:
            seen.update(gained)
            new += gained
            last_new = len(labels)
    return Walk(labels[:last_new], states[:last_new + 1], new)


def _seed_walks(model: Model) -> list[Walk]:
    """The checker's seed states (`model/seeds.py`) as starting prefixes."""
    out = []
    for _name, (_desc, labels) in SEEDS.items():
        if any(lab.startswith("unwind:") for lab in labels):
            continue
        states = [model.layout.fresh_state()]
        for lab in labels:
            t = apply(model, model.action_index(lab), states[-1])
            if t is None:
                break
            states.append(t)
        else:
            out.append(Walk(list(labels), states, []))
    return out


def generate_suite(cfg: Config, seed: int = 0, walks: int = 400, length: int = 30,
                   greed: float = 0.8, max_len: int = 90, last_mile: bool = True) -> Suite:
    """Go-explore style search: each walk continues a stored prefix (the fresh instance, or
    a walk that found something new, preferring rarely chosen coarse states) until every
    action is covered or `walks` walks ran."""
    model = model_for(cfg)
    rng = random.Random(seed)
    suite = Suite(cfg)
    goals = set(all_action_goals(model))
    teeth = TeethGoals(model, [m for m, mu in MUTANTS.items()
                               if mu.in_impl and m not in cfg.mutants])
    root = Walk([], [model.layout.fresh_state()], [])
    suite.covered[pair_of(model, root.states[0])] = 0
    archive: dict[tuple[object, ...], Walk] = {_cell(root.states[0]): root}
    for labels in DIRECTED.values():  # always part of the suite
        d = walk_from_labels(cfg, labels)
        d.new_goals = sorted({g for n, lab in enumerate(d.labels, start=1)
                              for g in goals_of_step(model, lab, d.states[n])}
                             - suite.covered.keys())
        for g in d.new_goals:
            suite.covered[g] = len(suite.walks)
        suite.walks.append(d)
        for n in range(1, len(d.labels) + 1):
            archive.setdefault(_cell(d.states[n]), Walk(d.labels[:n], d.states[:n + 1], []))
    for w in _seed_walks(model):
        gained = []
        for n, label in enumerate(w.labels, start=1):
            goals_n = goals_of_step(model, label, w.states[n]) | teeth.goals(
                label, w.states[n - 1], w.states[n], suite.covered.keys())
            gained += [g for g in sorted(goals_n) if g not in suite.covered and g not in gained]
            archive.setdefault(_cell(w.states[n]), Walk(w.labels[:n], w.states[:n + 1], []))
        if gained:
            for g in gained:
                suite.covered[g] = len(suite.walks)
            suite.walks.append(Walk(w.labels, w.states, gained))
    chosen: dict[tuple[object, ...], int] = {}
    for _ in range(walks):
        keys = sorted(archive, key=lambda c: (chosen.get(c, 0), rng.random()))
        cell = keys[0]
        chosen[cell] = chosen.get(cell, 0) + 1
        start = archive[cell]
        w = _walk(model, rng, start, min(length, max_len - len(start.labels)),
                  suite.covered, greed, teeth)
        if not w.new_goals:
            continue
        for g in w.new_goals:
            suite.covered[g] = len(suite.walks)
        suite.walks.append(w)
        for n in range(len(start.labels) + 1, len(w.labels) + 1):
            c = _cell(w.states[n])
            if c not in archive:
                archive[c] = Walk(w.labels[:n], w.states[:n + 1], [])
        if goals <= suite.covered.keys():
            break
    if last_mile:
        _last_mile(model, suite, archive)
    return suite


def _last_mile(model: Model, suite: Suite, archive: dict[tuple[object, ...], Walk]) -> None:
    """For each action still uncovered, the shortest stored prefix after which it is
    enabled (and runs into no known divergence) plus that one step."""
    prefixes = sorted(archive.values(), key=lambda w: len(w.labels))
    for goal in all_action_goals(model):
        if goal in suite.covered:
            continue
        i = model.action_index(goal.removeprefix("action:"))
        for w in prefixes:
            s = w.states[-1]
            try:
                t = apply(model, i, s)
            except ModelBoundExceeded:
                continue
            if t is not None and divergence_at(model.actions[i], s) is None:
                label = model.actions[i].label
                new = sorted(goals_of_step(model, label, t) - suite.covered.keys())
                for g in new:
                    suite.covered[g] = len(suite.walks)
                suite.walks.append(Walk([*w.labels, label], [*w.states, t], new))
                break


def write_suite(suite: Suite, out: Path, seed: int) -> list[Path]:
    """One ITF file per walk plus `goals.json` (goal -> file that covers it first)."""
    cfg = suite.cfg
    model = model_for(cfg)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    tag = "-".join([cfg.revision, *cfg.mutants])
    for n, w in enumerate(suite.walks):
        p = out / f"{tag}-{n:03d}.itf.json"
        write_itf(p, cfg, model, w.labels, w.states, seed=f"walk:{seed}:{n}", seed_len=0,
                  invariant=None, depth=len(w.labels), command=f"lifecycle traces replay {p}")
        paths.append(p)
    covered, total = suite.action_coverage(model)
    manifest = {
        "revision": cfg.revision,
        "mutants": list(cfg.mutants),
        "seed": seed,
        "traces": [p.name for p in paths],
        "actions_covered": covered,
        "actions_total": total,
        "goals": {g: paths[i].name for g, i in sorted(suite.covered.items())},
        "actions_not_covered": sorted(g for g in all_action_goals(model)
                                      if g not in suite.covered),
    }
    (out / "goals.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return paths


def walk_from_labels(cfg: Config, labels: list[str]) -> Walk:
    """A hand-written trace: run `labels` on the model from the fresh instance."""
    model = model_for(cfg)
    states = [model.layout.fresh_state()]
    for lab in labels:
        t = apply(model, model.action_index(lab), states[-1])
        if t is None:
            raise ValueError(f"{lab} is not enabled after {len(states) - 1} steps")
        states.append(t)
    return Walk(list(labels), states, [])


def write_walk(path: Path, cfg: Config, w: Walk, name: str) -> Path:
    write_itf(path, cfg, model_for(cfg), w.labels, w.states, seed=name, seed_len=0,
              invariant=None, depth=len(w.labels), command=f"lifecycle traces replay {path}")
    return path
