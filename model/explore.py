"""Explicit-state exploration of the model: the states within a few steps of the seed states,
found breadth-first with the concrete step function, as a networkx graph.

The model's state space is far too large to enumerate in Python (more than 150,000 states
within 16 steps of the fresh instance, even with one slot per saga kind), and its
generations grow without bound (every lock cycle bumps `updater_gen`, every reboot bumps the
VMM generation). The explorer therefore bounds three things, described with the resulting
pinned counts in docs/diagrams.md:

* **pools**: `EXPLORER_BOUNDS` (two VMMs, one migration, one slot per saga kind);
* **depth**: every state within `depth` steps (default `DEFAULT_DEPTH`) of a seed: the seeds
  of model/seeds.py, which the bounded checker also starts from, plus `EXTRA_SEEDS`, placed
  where the update saga resolves a stop or a migration;
* **generations**: each state is stored in a canonical form that forgets generation values
  the protocol can no longer tell apart (`canonical`), so equivalent states are counted once.

The generation abstraction keeps exactly what the actions compare:

* **Lock ids** (`i_updater`, `*_lid`, `uc_plid`) are compared only for equality, and 0 means
  NULL. They are renumbered 1, 2, ... in order of first appearance, and `next_uuid` becomes
  the next unused number: a fresh id stays fresh.
* **Lock generations** (`i_ugen` and the tokens `*_lgen`, `uc_plgen`): a token is compared
  only for equality with `i_ugen`, which never decreases. A token equal to `i_ugen` stays equal,
  one ahead stays ahead, and every stale token (older than `i_ugen`) becomes the same value.
* **Instance generation** (`i_gen`, `st_gen`, `uc_ngen`): the only constant an action compares
  it with is 2 (MOVE_TO_STOPPED's CAS), so values from 3 up are shifted down to 3; a recorded
  generation keeps its relation to `i_gen` (current or stale; a stale one is one behind).
* **VMM generations** (`v_gen`, `sa_gen`, `rb_gen` of one VMM): actions compare them with each
  other (`<`), add 1, and compare with the constants 1 and 2. Values 0..2 are kept; above 2
  the sorted distinct values keep their order and gaps of up to `VMM_GAP`, larger gaps shrink.
* Migration generations are left alone: a migration row changes only a few times.

The abstraction only holds for the protocol without defects switched on (mutants change
which generation comparisons are made), so the explorer refuses mutants. Its soundness is
checked, not assumed: tests/test_explore.py runs every action from raw reachable states and
from their canonical forms and requires the same canonical successors.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import networkx as nx

from .actions import Model, model_for
from .seeds import Seed, SeedError, seed_states
from .state import Config
from .step import ModelBoundExceeded, State, apply

# One slot per saga kind, two VMMs (an active VMM and a migration target) and one migration:
# the smallest pools in which start, stop, restart, migration and every update-saga path occur.
EXPLORER_BOUNDS: dict[str, int] = {
    "vmms": 2,
    "migrations": 1,
    "start_sagas": 1,
    "migrate_sagas": 1,
    "update_parents": 1,
    "update_children": 1,
}
# Seeds besides those of model/seeds.py: migrations that ended, with the report that starts
# the update saga delivered, so that the saga's resolution of a migration is within reach.
# A step may differ per revision ({revision: label}) where the revisions react differently.
SeedStep = str | dict[str, str]
EXTRA_SEEDS: dict[str, tuple[str, str, list[SeedStep]]] = {
    "vmm-failed": (
        "running, then the VMM failed and its report reached Nexus; only rfd486 starts an "
        "update saga for a Failed VMM (gap G4 at the baseline)",
        "running",
        ["sled-agent.vmm_transition(vmm=0, to=FAILED)",
         {"baseline": "sled-agent.deliver_report(vmm=0, keep=0, update=none)",
          "rfd486": "sled-agent.deliver_report(vmm=0, keep=0, update=started)"}]),
    "migration-completed": (
        "migrating, then both sides Completed; the target's report started an update saga",
        "migrating",
        ["sled-agent.migration_target_completes(migration=0)",
         "sled-agent.migration_source_completes(migration=0)",
         "sled-agent.deliver_report(vmm=1, keep=0, update=started)"]),
    "stopping-committed": (
        "stopping, and the update saga has committed NoVmm; its destroy-VMM step is next",
        "stopping",
        ["start-instance-update.LOCK_INSTANCE(saga=0, outcome=ok)",
         "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA(saga=0, outcome=ok)",
         "instance-update.BECOME_UPDATER(saga=0, outcome=ok)",
         "instance-update.RECONCILE_RESOURCES(saga=0, outcome=ok)",
         "instance-update.COMMIT_INSTANCE_UPDATES(saga=0, outcome=ok)"]),
    "start-unwound-under-migration": (
        "a start saga unwinds after a migrate saga moved the instance generation, the migrate "
        "saga unwinds too, and an update saga is about to commit the cleared migration; the "
        "start saga's SagaUnwound write is guarded by the VMM generation only at the baseline",
        "starting",
        ["instance-start.ADD_VIRTUAL_RESOURCES(saga=0, outcome=fail)",
         "sled-agent.vmm_transition(vmm=0, to=RUNNING)",
         "instance-start.ENSURE_REGISTERED.undo(saga=0, outcome=undo)",
         "instance-start.DPD_ENSURE.undo(saga=0, outcome=undo)",
         "sled-agent.deliver_report(vmm=0, keep=0, update=none)",
         "user.instance_migrate(saga=0)",
         "instance-migrate.RESERVE_RESOURCES(saga=0, outcome=ok)",
         "instance-migrate.CREATE_VMM_RECORD(saga=0, outcome=ok)",
         "instance-migrate.CREATE_MIGRATION_RECORD(saga=0, outcome=ok)",
         "instance-migrate.SET_MIGRATION_IDS(saga=0, outcome=ok)",
         "instance-start.MARK_AS_STARTING.undo(saga=0, outcome=undo)",
         "instance-start.CREATE_VMM_RECORD.undo(saga=0, outcome=undo)",
         "instance-migrate.ENSURE_DESTINATION_PROPOLIS(saga=0, outcome=fail)",
         "instance-migrate.CREATE_MIGRATION_RECORD.undo(saga=0, outcome=undo)",
         "instance-updater.activate",
         "start-instance-update.LOCK_INSTANCE(saga=0, outcome=ok)",
         "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA(saga=0, outcome=ok)",
         "instance-update.BECOME_UPDATER(saga=0, outcome=ok)",
         "instance-update.RECONCILE_RESOURCES(saga=0, outcome=ok)"]),
    "migration-failed": (
        "migrating, then the migration failed; the target's report started an update saga",
        "migrating",
        ["sled-agent.migration_fails(migration=0)",
         "sled-agent.deliver_report(vmm=1, keep=0, update=started)"]),
}
DEFAULT_DEPTH = 5
DEFAULT_MAX_STATES = 100_000
VMM_GAP = 3
INSTANCE_GEN_TOP = 3  # i_gen values from here up are shifted down to this value


def explorer_config(revision: str, **overrides: int) -> Config:
    """The configuration the diagrams are drawn from: EXPLORER_BOUNDS, no defects."""
    b = dict(EXPLORER_BOUNDS)
    b.update(overrides)
    return Config(revision=revision, mutants=(), vmms=b["vmms"], migrations=b["migrations"],
                  start_sagas=b["start_sagas"], migrate_sagas=b["migrate_sagas"],
                  update_parents=b["update_parents"], update_children=b["update_children"])


class StateCapReached(RuntimeError):
    """The exploration found more distinct states than it was allowed to keep."""


# --------------------------------------------------------------------------- abstraction
def _slots(model: Model, base: str) -> list[str]:
    return [f"{base}.{k}" for k in range(model.layout.sizes.get(base, 0))]


@dataclass(frozen=True)
class _Families:
    lock_ids: tuple[str, ...]
    lock_gens: tuple[str, ...]
    start_gens: tuple[str, ...]
    new_gens: tuple[str, ...]
    vmm_gens: tuple[tuple[str, ...], ...]


def _families(model: Model) -> _Families:
    ids = ["i_updater"]
    for base in ("up_lid", "uc_plid", "uc_lid", "st_lid"):
        ids += _slots(model, base)
    gens: list[str] = []
    for base in ("up_lgen", "uc_plgen", "uc_lgen", "st_lgen"):
        gens += _slots(model, base)
    vmm = tuple((f"v_gen.{k}", f"sa_gen.{k}", f"rb_gen.{k}")
                for k in range(model.cfg.vmms))
    return _Families(tuple(ids), tuple(gens), tuple(_slots(model, "st_gen")),
                     tuple(_slots(model, "uc_ngen")), vmm)


_FAMILIES: dict[Config, _Families] = {}


def canonical(model: Model, s: State) -> State:
    """`s` with its generation values replaced by canonical ones (see the module doc)."""
    fam = _FAMILIES.get(model.cfg)
    if fam is None:
        fam = _FAMILIES[model.cfg] = _families(model)
    out = dict(s)
    # lock ids: renumber by first appearance
    ren: dict[int, int] = {}
    for n in fam.lock_ids:
        v = int(s[n])
        if v != 0:
            if v not in ren:
                ren[v] = len(ren) + 1
            out[n] = ren[v]
    out["next_uuid"] = len(ren) + 1
    # lock generations: current, one ahead, or stale
    cur = int(s["i_ugen"])
    out["i_ugen"] = 3
    for n in fam.lock_gens:
        v = int(s[n])
        if v == 0:
            continue
        out[n] = 2 if v < cur else 3 + min(v - cur, 1)
    # instance generation: shift down to INSTANCE_GEN_TOP; recorded ones current or stale
    g = int(s["i_gen"])
    top = min(g, INSTANCE_GEN_TOP)
    out["i_gen"] = top
    for n in fam.start_gens:
        v = int(s[n])
        if v != 0:
            out[n] = top if v >= g else top - 1
    for n in fam.new_gens:
        v = int(s[n])
        if v != 0:
            out[n] = top + 1 if v - 1 >= g else top
    # VMM generations: keep 0..2 and the order; shrink gaps above VMM_GAP
    for names in fam.vmm_gens:
        vals = sorted({int(s[n]) for n in names} | {0, 1, 2})
        mapping: dict[int, int] = {}
        prev_raw = prev_new = -1
        for v in vals:
            if v <= 2:
                new = v
            else:
                new = prev_new + min(v - prev_raw, VMM_GAP)
            mapping[v] = new
            prev_raw, prev_new = v, new
        for n in names:
            out[n] = mapping[int(s[n])]
    return out


# --------------------------------------------------------------------------- exploration
@dataclass
class Exploration:
    """The explored state graph of one configuration.

    Nodes are state numbers in breadth-first order (the seed states first) with attributes
    `state` (the canonical state), `depth` (fewest steps from a seed) and, for seed states,
    `seed` (its name). Edges carry `action`, the action's index in `model.actions`; there is
    one edge per action, so parallel edges are normal. Edges leaving the states at the depth
    bound are not explored.
    """

    cfg: Config
    model: Model
    graph: nx.MultiDiGraph
    depth: int
    seeds: tuple[str, ...]
    seconds: float
    abstract: bool
    out_of_range: int = 0  # successors dropped because a value left its bit range
    notes: list[str] = field(default_factory=list)

    @property
    def states(self) -> int:
        return int(self.graph.number_of_nodes())

    @property
    def edges(self) -> int:
        return int(self.graph.number_of_edges())

    def state(self, n: int) -> State:
        return self.graph.nodes[n]["state"]  # type: ignore[no-any-return]


def explorer_seeds(model: Model, names: tuple[str, ...] | None = None) -> list[Seed]:
    """The seed states of model/seeds.py and EXTRA_SEEDS (all, or those named)."""
    base = seed_states(model)
    by_name = {sd.name: sd for sd in base}
    out = list(base)
    for name, (desc, start, steps) in EXTRA_SEEDS.items():
        s = by_name[start].state
        labels = [x if isinstance(x, str) else x[model.cfg.revision] for x in steps]
        for lab in labels:
            t = apply(model, model.action_index(lab), s)
            if t is None:
                raise SeedError(f"explorer seed {name!r}: {lab} is not enabled "
                                f"({model.cfg.describe()})")
            s = t
        out.append(Seed(name, desc, by_name[start].prefix + labels, s))
    if names is None:
        return out
    unknown = set(names) - {sd.name for sd in out}
    if unknown:
        raise ValueError(f"unknown seed(s) {', '.join(sorted(unknown))}")
    return [sd for sd in out if sd.name in names]


def _key(names: list[str], s: State) -> tuple[int | bool, ...]:
    return tuple(s[n] for n in names)


def explore(cfg: Config, depth: int = DEFAULT_DEPTH, max_states: int = DEFAULT_MAX_STATES, *,
            seeds: tuple[str, ...] | None = None, abstract: bool = True) -> Exploration:
    """Breadth-first search with the concrete step function from the named seed states
    (`model/seeds.py`; all of them by default), `depth` steps deep.

    With `abstract` (the default) states are stored in canonical form (`canonical`).
    Raises StateCapReached when more than `max_states` distinct states are found.
    """
    if abstract and cfg.mutants:
        raise ValueError("the explorer's generation abstraction holds only without mutants; "
                         f"got {', '.join(cfg.mutants)}")
    if depth < 0:
        raise ValueError(f"depth must be at least 0, got {depth}")
    model = model_for(cfg)
    names = model.layout.names
    norm = (lambda s: canonical(model, s)) if abstract else (lambda s: s)
    t0 = time.perf_counter()
    g = nx.MultiDiGraph()
    index: dict[tuple[int | bool, ...], int] = {}
    queue: deque[int] = deque()
    picked = explorer_seeds(model, seeds)
    for sd in picked:
        s0 = norm(sd.state)
        k = _key(names, s0)
        if k in index:
            continue
        index[k] = len(index)
        g.add_node(index[k], state=s0, depth=0, seed=sd.name)
        queue.append(index[k])
    dropped = 0
    n_actions = len(model.actions)
    while queue:
        u = queue.popleft()
        s = g.nodes[u]["state"]
        du = g.nodes[u]["depth"]
        if du >= depth:
            continue
        for i in range(n_actions):
            try:
                t = apply(model, i, s)
            except ModelBoundExceeded:
                dropped += 1
                continue
            if t is None:
                continue
            t = norm(t)
            k = _key(names, t)
            v = index.get(k)
            if v is None:
                v = len(index)
                if v >= max_states:
                    raise StateCapReached(
                        f"exploration of {cfg.describe()} found more than {max_states} "
                        f"distinct states (at breadth-first depth {du + 1} of {depth}) and "
                        "stopped; raise the cap (--max-states) or lower the depth")
                index[k] = v
                g.add_node(v, state=t, depth=du + 1)
                queue.append(v)
            g.add_edge(u, v, action=i)
    secs = time.perf_counter() - t0
    return Exploration(cfg, model, g, depth, tuple(sd.name for sd in picked), secs, abstract,
                       dropped)
