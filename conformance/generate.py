"""Generation of the conformance suite from the model (issue 4, part 1).

Seeded random walks over the model's concrete step function (`model/step.py`), steered
towards coverage goals (`conformance/coverage.py`): at each step, an enabled action that
covers a goal not yet covered is preferred, and each walk continues a prefix found earlier
(go-explore: the least-chosen coarse state of an archive). Then every action still
uncovered is tried after each stored prefix, shortest first ("last mile"). A walk is cut
after the last step that covered a new goal and written as an ITF trace (prefix included);
walks that cover nothing new are dropped, so every trace in the suite is distinct and covers
at least one goal first. The hand-written traces of `conformance/scenarios.py` are always
included. Steps that run into a known divergence (`conformance/divergences.py`) are never
taken. The same seed gives the same suite.

Finally (`Z3Options`, `conformance/goals.py`) every action or pair goal still open is either
proven unreachable (unsat together with an inductive lemma set that is re-proven on every
run), or searched by bounded model checking from the checker's seeds: the shortest path from
any seed, replayed concretely, blocked and asked again if it runs into a known divergence.
A goal neither proven nor found within the depth and time budget is reported as undecided,
never as unreachable. Saga nodes as failure and crash points are the `node:` goals: a node
outcome is covered when one of its per-slot actions is.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from model.actions import Model, model_for
from model.seeds import SEEDS
from model.state import Config
from model.step import ModelBoundExceeded, State, apply, successors
from model.trace import LoadedTrace, load_itf, write_itf
from model.vocab import MUTANTS

from .coverage import TeethGoals, all_action_goals, all_pair_goals, goals_of_step, pair_of
from .divergences import divergence_at
from .goals import (
    SearchResult,
    Start,
    bmc_search,
    node_goals,
    prove_unreachable,
    seed_paths,
    stored_proof,
)
from .scenarios import DIRECTED, DIRECTED_ONLY, LAST_RESORT, LAST_RESORT_ONLY


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
    sample: dict[tuple[object, ...], State] = field(default_factory=dict)  # states visited
    z3_found: list[str] = field(default_factory=list)  # goals first covered by a Z3 path
    unreachable: list[str] = field(default_factory=list)  # goals proven unreachable
    undecided: dict[str, str] = field(default_factory=dict)  # goal -> why still open
    lemmas: int = 0  # size of the inductive lemma set the proofs used
    disagreements: list[str] = field(default_factory=list)  # Z3 paths not concrete

    def action_coverage(self, model: Model) -> tuple[int, int]:
        goals = all_action_goals(model)
        return sum(g in self.covered for g in goals), len(goals)

    def teeth(self) -> list[str]:
        return sorted(g.removeprefix("teeth:") for g in self.covered if g.startswith("teeth:"))

    def pairs(self) -> list[str]:
        return sorted(g for g in self.covered if g.startswith("pair:"))

    def categories(self, model: Model) -> dict[str, dict[str, list[str]]]:
        """Per goal category (action, pair, node): covered, by Z3, unreachable, undecided."""
        goals = {"action": all_action_goals(model), "pair": all_pair_goals()}
        out: dict[str, dict[str, list[str]]] = {}
        for cat, gs in goals.items():
            out[cat] = {
                "total": gs,
                "covered": [g for g in gs if g in self.covered],
                "z3_found": [g for g in gs if g in self.z3_found],
                "unreachable": [g for g in gs if g in self.unreachable],
                "undecided": [g for g in gs if g in self.undecided],
                "not_covered": [g for g in gs if g not in self.covered
                                and g not in self.unreachable],
            }
        nodes = node_goals(model)
        node_out: dict[str, list[str]] = {"total": list(nodes), "covered": [], "z3_found": [],
                                          "unreachable": [], "undecided": [],
                                          "not_covered": []}
        for n, acts in nodes.items():
            if any(a in self.covered for a in acts):
                node_out["covered"].append(n)
                first = min((self.covered[a], a) for a in acts if a in self.covered)[1]
                if first in self.z3_found:
                    node_out["z3_found"].append(n)
            elif all(a in self.unreachable for a in acts):
                node_out["unreachable"].append(n)
            else:
                node_out["not_covered"].append(n)
                if any(a in self.undecided for a in acts):
                    node_out["undecided"].append(n)
        out["node"] = node_out
        return out


def _cell(s: State) -> tuple[object, ...]:
    """A coarse abstraction of a state, used to pick diverse places to continue from."""
    return tuple(int(v) for k, v in sorted(s.items())
                 if k.startswith(("i_state", "i_active", "i_mig", "i_updater", "v_state",
                                  "m_src_st", "m_tgt_st", "sa_state"))
                 or k.endswith(("_mode", "_mode.0", "_mode.1")))


def _walk(model: Model, rng: random.Random, start: Walk, length: int,
          covered: dict[str, int], greed: float, teeth: TeethGoals,
          sample: dict[tuple[object, ...], State]) -> Walk:
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
        sample.setdefault(tuple(t.values()), t)
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
                   greed: float = 0.8, max_len: int = 90, last_mile: bool = True,
                   z3: Z3Options | None = None) -> Suite:
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
    fixed = [walk_from_labels(cfg, labels) for name, labels in DIRECTED.items()
             if DIRECTED_ONLY.get(name, cfg.revision) == cfg.revision]
    fixed += [Walk(list(lt.labels), list(lt.states), []) for lt in regression_traces(cfg)]
    for d in fixed:  # always part of the suite
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
                  suite.covered, greed, teeth, suite.sample)
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
    if z3 is not None:
        _z3_goals(model, suite, teeth, z3)
    return suite


@dataclass
class Z3Options:
    """Bounds of the Z3 part: path length, time per goal, time overall.

    With `goal_rlimit` the budgets are Z3 resource units instead of seconds (per open goal:
    `goal_rlimit`; per proof query: `PROOF_RLIMIT`) and no overall deadline applies: the
    suite is then the same on every machine, however fast or loaded, for the pinned Z3."""

    depth: int = 10
    walk_depth: int = 3  # then from every state on a stored walk, this many steps
    goal_seconds: float = 20.0
    total_seconds: float = 600.0
    log: Callable[[str], None] | None = None
    goal_rlimit: int | None = None


# Opt-in seeds (`model/seeds.py`) searched last, for the goals still undecided: the only paths
# to some goals pass through a second migration, 42 steps in (docs/conformance.md)
DEEP_SEEDS = ("remigrating",)

# The last pass (from the hand-written paths of `LAST_RESORT`) gives each goal still
# undecided this many times its usual budget, in resource units and in seconds: only a few
# goals are left by then, and their paths run 8 to 10 steps beyond a path of 20
# (docs/conformance.md). In seconds less, so that the default (time-budgeted) command stays
# within a few minutes; the overall deadline applies as well.
LAST_RESORT_BUDGET = (40, 4)

# Resource units for one proof query (the stored lemmas' Houdini round, one unreachability
# query) in the deterministic mode: far above what they take (docs/conformance.md).
PROOF_RLIMIT = 200_000_000


def _z3_goals(model: Model, suite: Suite, teeth: TeethGoals, opt: Z3Options) -> None:
    """Goals still open after the walks: proven unreachable with the stored inductive
    lemmas (`conformance/goals.py`), else searched by bounded model checking from the
    seeds; what neither settles is undecided."""
    import time

    from model.bmc import encoding_for

    deadline = time.perf_counter() + opt.total_seconds
    enc = encoding_for(model.cfg)
    proof_rlimit = PROOF_RLIMIT if opt.goal_rlimit is not None else None
    proof = stored_proof(model, enc, log=opt.log, rlimit=proof_rlimit)
    suite.lemmas = len(proof.lemmas)
    open_goals = [g for g in all_action_goals(model) + all_pair_goals()
                  if g not in suite.covered]
    suite.unreachable = prove_unreachable(model, enc, proof, open_goals,
                                          rlimit=proof_rlimit) if proof.lemmas else []
    if opt.log is not None:
        opt.log(f"{len(proof.lemmas)} inductive lemmas ({proof.seconds:.1f}s); "
                f"{len(suite.unreachable)} of {len(open_goals)} open goals proven unreachable")
    todo = [g for g in open_goals if g not in suite.unreachable]

    covers = path_goals(model)

    def search(goals: list[str], starts: list[Start], depth: int,
               scale: tuple[int, int] = (1, 1)) -> SearchResult:
        rlimit = None if opt.goal_rlimit is None else opt.goal_rlimit * scale[0]
        return bmc_search(model, enc, goals, starts, covers, max_depth=depth,
                          goal_seconds=opt.goal_seconds * scale[1], deadline=deadline,
                          lemmas=proof.lemmas, goal_rlimit=rlimit)

    def search_rest(starts: list[Start], depth: int, where: str,
                    scale: tuple[int, int] = (1, 1)) -> None:
        """Search the goals still undecided from other starts (each goal's budget in
        resource units, or in seconds, times `scale`); merge what is found."""
        more = search(list(res.undecided), starts, depth, scale)
        res.found += more.found
        res.blocked += more.blocked
        res.disagreements += more.disagreements
        res.undecided = {g: f"{why}; from {where}: {more.undecided[g]}"
                         for g, why in res.undecided.items() if g in more.undecided}

    res = search(todo, seed_paths(model), opt.depth)
    if opt.walk_depth and res.undecided:
        # goals too deep for the seeds: the shortest continuation of any state on a stored
        # walk (minimal given that walk's prefix)
        search_rest(_prefix_starts([("walk", w) for w in suite.walks], 0), opt.walk_depth,
                    "walk states")
    if res.undecided:
        # goals deeper still: from the seeds kept for this (`DEEP_SEEDS`), whose prefixes
        # are long; only for what is left, so they do not lengthen the other traces
        search_rest(seed_paths(model, DEEP_SEEDS), opt.depth, "the deep seeds")
    if res.undecided:
        # last, from every state of the hand-written paths of `LAST_RESORT` (each path
        # found is shortest given that prefix): some goals lie only beyond paths that the
        # searches above do not reach within their depth
        paths, _ = last_resort_paths(model.cfg)
        if paths:
            search_rest(_prefix_starts(paths, 1), opt.depth, "the hand-written paths",
                        LAST_RESORT_BUDGET)
    for f in res.found:
        labels = [*f.start.labels, *f.labels]
        states = [*f.start.states, *f.states]
        new: list[str] = []
        for n, lab in enumerate(labels, start=1):
            gs = goals_of_step(model, lab, states[n]) | teeth.goals(
                lab, states[n - 1], states[n], suite.covered.keys() | set(new))
            new += [g for g in sorted(gs) if g not in suite.covered and g not in new]
        for g in new:
            suite.covered[g] = len(suite.walks)
        suite.z3_found += [g for g in new if not g.startswith("teeth:")]
        suite.walks.append(Walk(labels, states, new))
    found_walks = suite.walks[len(suite.walks) - len(res.found):]
    for g in list(res.undecided):
        # an open action enabled on a path Z3 found (a sibling outcome of the same node,
        # say) is covered by that path's prefix plus this step: no longer than Z3's path
        if not g.startswith("action:") or g in suite.covered:
            continue
        i = model.action_index(g.removeprefix("action:"))
        for w in found_walks:
            hit = _extend(model, w, i)
            if hit is not None:
                hit.new_goals = sorted(goals_of_step(model, hit.labels[-1], hit.states[-1])
                                       - suite.covered.keys())
                for h in hit.new_goals:
                    suite.covered[h] = len(suite.walks)
                suite.z3_found += hit.new_goals
                suite.walks.append(hit)
                break
    suite.undecided = {g: why for g, why in res.undecided.items() if g not in suite.covered}
    suite.disagreements = res.disagreements
    if opt.log is not None:
        opt.log(f"Z3 search: {len(res.found)} paths, {len(suite.z3_found)} goals, "
                f"{len(suite.undecided)} undecided, {res.blocked} paths blocked")
        for d in res.disagreements:
            opt.log(f"Z3/concrete disagreement (path dropped): {d}")


def path_goals(model: Model) -> Callable[[str, list[str], list[State]], set[str]]:
    """For `bmc_search`: the goals a path (its labels and states) covers, checked
    concretely."""
    def covers(goal: str, labels: list[str], states: list[State]) -> set[str]:
        return {g for n, lab in enumerate(labels) for g in goals_of_step(model, lab, states[n])}
    return covers


def last_resort_paths(cfg: Config) -> tuple[list[tuple[str, Walk]], list[str]]:
    """The hand-written paths of `LAST_RESORT` that are paths of `cfg`'s revision, as walks,
    and the names of those that are not (or are kept for another revision:
    `LAST_RESORT_ONLY`)."""
    paths, skipped = [], []
    for name, labels in LAST_RESORT.items():
        if LAST_RESORT_ONLY.get(name, cfg.revision) != cfg.revision:
            skipped.append(name)
            continue
        try:
            paths.append((name, walk_from_labels(cfg, labels)))
        except ValueError:
            skipped.append(name)
    return paths, skipped


def _prefix_starts(paths: list[tuple[str, Walk]], first: int) -> list[Start]:
    """Every state of the paths, from step `first` on, as a start for the Z3 search (with
    the path's prefix up to it, named `<name>-<step>`), each distinct state once."""
    starts: dict[tuple[object, ...], Start] = {}
    for name, w in paths:
        for n in range(first, len(w.labels) + 1):
            starts.setdefault(tuple(w.states[n].values()),
                              Start(f"{name}-{n}", w.labels[:n], w.states[:n + 1]))
    return list(starts.values())


def _extend(model: Model, w: Walk, i: int) -> Walk | None:
    """The shortest prefix of `w` after which action `i` is enabled (and runs into no known
    divergence), plus that step."""
    for n, s in enumerate(w.states):
        if divergence_at(model.actions[i], s) is not None:
            continue
        try:
            t = apply(model, i, s)
        except ModelBoundExceeded:
            continue
        if t is not None:
            return Walk([*w.labels[:n], model.actions[i].label], [*w.states[:n + 1], t], [])
    return None


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
        "lemmas": suite.lemmas,
        "categories": {cat: {k: (len(v) if k == "total" else v) for k, v in d.items()}
                       for cat, d in suite.categories(model).items()},
        "undecided": suite.undecided,
        "z3_disagreements": suite.disagreements,
    }
    (out / "goals.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return paths


REGRESSIONS = Path(__file__).resolve().parent / "regressions"


def regression_traces(cfg: Config) -> list[LoadedTrace]:
    """Generated traces kept because they once caught an implementation defect that later
    suites (after a model change reshuffled the walks) no longer reach: each
    `regressions/<defect>.itf.json` is replayed on the model when loaded and used for its
    own protocol revision only."""
    out = []
    for path in sorted(REGRESSIONS.glob("*.itf.json")):
        lt = load_itf(path)
        if lt.cfg.revision == cfg.revision and lt.cfg.mutants == cfg.mutants:
            out.append(lt)
    return out


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
