"""Abstract views of the model's states, for the state diagrams (docs/diagrams.md).

A projection maps a state to a few named components, each with a readable value: the
instance's external state, the state of each VMM row, of each migration row, the node each
update saga is at, who holds the updater lock. A step of the model is an edge of a projection's
diagram when it changes a component's value; the edge goes from the old value to the new one
and is labelled with the step's action. Projecting every edge of an exploration (or of a trace)
this way gives the diagram.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .actions import Model
from .effective_state import effective_state
from .explore import Exploration
from .expr import CONCRETE, Ctx
from .saga import Action
from .state import FWD, IDLE, NONE, UNWIND
from .step import State
from .vocab import ExternalState, InstanceState, MigrationState, VmmState

# A projection gives, for one state, component -> (value, detail). The detail (may be "")
# explains the value; the diagram lists every detail seen for a value under its name.
Components = dict[str, tuple[str, str]]


@dataclass(frozen=True)
class Projection:
    name: str  # file stem in diagrams/<revision>/
    title: str
    project: Callable[[Model, State], Components]
    order: tuple[str, ...]  # values in drawing order (others follow, sorted)
    edge_label: Callable[[Action], str]
    clusters: dict[str, str] = field(default_factory=dict)  # value prefix -> cluster title


def _title(name: str) -> str:
    return "".join(w.capitalize() for w in name.split("_"))


def _action_name(a: Action) -> str:
    return a.name


def _action_and_outcome(a: Action) -> str:
    oc = a.arg("outcome")
    return a.name if oc in (None, "ok", "undo") else f"{a.name} ({oc})"


# ------------------------------------------------------------------ external instance state
def external_state_of(model: Model, s: State) -> ExternalState:
    """SPEC §3 `determine_effective_state`, evaluated on a concrete state."""
    ctx = Ctx(CONCRETE, s, model.layout.sizes)
    return ExternalState(int(effective_state(ctx, model.cfg)))


def _external(model: Model, s: State) -> Components:
    ext = external_state_of(model, s)
    i = InstanceState(int(s["i_state"]))
    a = int(s["i_active"])
    if a == NONE:
        detail = f"{_title(i.name)}, no VMM"
    else:
        v = VmmState(int(s[f"v_state.{a}"]))
        deleted = " (deleted)" if s[f"v_del.{a}"] else ""
        detail = f"{_title(i.name)} + {_title(v.name)}{deleted}"
    if s["i_mig"] != NONE:
        detail += ", migration id set"
    return {"instance": (_title(ext.name), detail)}


EXTERNAL_STATE = Projection(
    "external_state", "External instance state (SPEC §3), with the records behind each",
    _external, tuple(_title(x.name) for x in ExternalState), _action_name)


# ------------------------------------------------------------------------------ VMM rows
def _vmm_value(s: State, k: int) -> str:
    v = VmmState(int(s[f"v_state.{k}"]))
    if v == VmmState.ABSENT:
        return "no row"
    return _title(v.name) + (" (deleted)" if s[f"v_del.{k}"] else "")


def _vmms(model: Model, s: State) -> Components:
    return {f"vmm{k}": (_vmm_value(s, k), "") for k in range(model.cfg.vmms)}


VMM_STATE = Projection(
    "vmm_state", "VMM row state (SPEC §1.2, §2.1); (deleted) = time_deleted set",
    _vmms,
    ("no row",) + tuple(x for v in VmmState if v not in (VmmState.ABSENT, VmmState.GONE)
                        for x in (_title(v.name), _title(v.name) + " (deleted)")),
    _action_name)


# ------------------------------------------------------------------------ migration rows
def _migration_value(s: State, m: int) -> str:
    src = MigrationState(int(s[f"m_src_st.{m}"]))
    if src == MigrationState.ABSENT:
        return "no row"
    tgt = MigrationState(int(s[f"m_tgt_st.{m}"]))
    deleted = " (deleted)" if s[f"m_del.{m}"] else ""
    return f"source {_title(src.name)}\ntarget {_title(tgt.name)}{deleted}"


def _migrations(model: Model, s: State) -> Components:
    return {f"mig{m}": (_migration_value(s, m), "") for m in range(model.cfg.migrations)}


_MIG_LIVE = [x for x in MigrationState if x != MigrationState.ABSENT]
MIGRATION = Projection(
    "migration", "Migration row, both sides (SPEC §1.3, §2.4); (deleted) = time_deleted set",
    _migrations,
    ("no row",) + tuple(f"source {_title(a.name)}\ntarget {_title(b.name)}{d}"
                        for d in ("", " (deleted)") for a in _MIG_LIVE for b in _MIG_LIVE),
    _action_name)


# ------------------------------------------------------------------------ update sagas
def _saga_value(model: Model, kind: str, prefix: str, s: State, slot: int) -> str:
    mode = int(s[f"{prefix}_mode.{slot}"])
    if mode == IDLE:
        return f"{kind}\nnot running"
    sd = next(d for d in model.sagas if d.kind == kind)
    node = sd.nodes[int(s[f"{prefix}_pc.{slot}"])].name
    if mode == UNWIND:
        return f"{kind}\n{node}.undo"
    waiting = prefix == "up" and mode == FWD and s[f"up_child.{slot}"] != NONE
    return f"{kind}\n{node}" + (" (waiting for child)" if waiting else "")


def _update_sagas(model: Model, s: State) -> Components:
    out: Components = {}
    for p in range(model.cfg.update_parents):
        out[f"parent{p}"] = (_saga_value(model, "start-instance-update", "up", s, p), "")
    for c in range(model.cfg.update_children):
        out[f"child{c}"] = (_saga_value(model, "instance-update", "uc", s, c), "")
    return out


UPDATE_SAGA = Projection(
    "update_saga",
    "Update saga node flow (SPEC §4.6): start-instance-update and instance-update, "
    "with unwinding",
    _update_sagas,
    tuple(f"start-instance-update\n{n}" for n in (
        "not running", "LOCK_INSTANCE", "FETCH_STATE_AND_START_REAL_SAGA",
        "FETCH_STATE_AND_START_REAL_SAGA (waiting for child)", "LOCK_INSTANCE.undo"))
    + tuple(f"instance-update\n{n}" for n in (
        "not running", "BECOME_UPDATER", "RECONCILE_RESOURCES", "COMMIT_INSTANCE_UPDATES",
        "DESTROY_ACTIVE_VMM", "DESTROY_TARGET_VMM", "BECOME_UPDATER.undo")),
    _action_and_outcome,
    {"start-instance-update\n": "start-instance-update (parent)",
     "instance-update\n": "instance-update (child)"})


# ------------------------------------------------------------------------ updater lock
def _holder(model: Model, s: State) -> str:
    lid = int(s["i_updater"])
    if lid == 0:
        return "unlocked"
    for p in range(model.cfg.update_parents):
        if s[f"up_mode.{p}"] != IDLE and int(s[f"up_lid.{p}"]) == lid:
            return "held by start-instance-update"
    for c in range(model.cfg.update_children):
        if s[f"uc_mode.{c}"] != IDLE and int(s[f"uc_lid.{c}"]) == lid:
            return "held by instance-update"
    return "held by an id no running saga has"


def _lock(model: Model, s: State) -> Components:
    """The holder, and which running sagas keep a token (id, gen) the lock no longer has."""
    lock = (int(s["i_updater"]), int(s["i_ugen"]))
    stale: set[str] = set()
    for kind, prefix, n in (("parent", "up", model.cfg.update_parents),
                            ("child", "uc", model.cfg.update_children)):
        for k in range(n):
            token = (int(s[f"{prefix}_lid.{k}"]), int(s[f"{prefix}_lgen.{k}"]))
            if s[f"{prefix}_mode.{k}"] != IDLE and token[1] != 0 and token != lock:
                stale.add(kind)
    value = _holder(model, s)
    if stale:
        value += "\n(stale token: " + ", ".join(sorted(stale)) + ")"
    return {"lock": (value, "")}


_HOLDERS = ("unlocked", "held by start-instance-update", "held by instance-update",
            "held by an id no running saga has")
UPDATER_LOCK = Projection(
    "updater_lock",
    "Updater-lock ownership (SPEC §5); a stale token is one a running saga still holds "
    "after the lock moved on",
    _lock,
    tuple(h + t for h in _HOLDERS for t in (
        "", "\n(stale token: parent)", "\n(stale token: child)",
        "\n(stale token: child, parent)")),
    _action_name)

PROJECTIONS: tuple[Projection, ...] = (EXTERNAL_STATE, VMM_STATE, MIGRATION, UPDATE_SAGA,
                                       UPDATER_LOCK)


# --------------------------------------------------------------------------- diagrams
@dataclass
class AbstractDiagram:
    """The projected graph: values seen (with details) and labelled edges between them."""

    projection: Projection
    nodes: dict[str, set[str]] = field(default_factory=dict)  # value -> details
    edges: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # -> labels
    edge_actions: dict[tuple[str, str], set[int]] = field(default_factory=dict)  # -> indexes

    def add_state(self, comps: Components) -> None:
        for value, detail in comps.values():
            d = self.nodes.setdefault(value, set())
            if detail:
                d.add(detail)

    def add_step(self, before: Components, after: Components, label: str,
                 action: int | None = None) -> None:
        for key, (v0, _) in before.items():
            v1 = after[key][0]
            if v0 != v1:
                self.edges.setdefault((v0, v1), set()).add(label)
                if action is not None:
                    self.edge_actions.setdefault((v0, v1), set()).add(action)

    def ordered_nodes(self) -> list[str]:
        rank = {v: i for i, v in enumerate(self.projection.order)}
        return sorted(self.nodes, key=lambda v: (rank.get(v, len(rank)), v))


def project_exploration(projection: Projection, ex: Exploration) -> AbstractDiagram:
    """The diagram of `projection` over every state and step of an exploration."""
    d = AbstractDiagram(projection)
    comps = {n: projection.project(ex.model, ex.state(n)) for n in ex.graph.nodes}
    for c in comps.values():
        d.add_state(c)
    for u, v, i in ex.graph.edges(data="action"):
        d.add_step(comps[u], comps[v], projection.edge_label(ex.model.actions[i]), i)
    return d


def trace_edges(projection: Projection, model: Model, labels: list[str],
                states: list[State]) -> set[tuple[str, str]]:
    """The edges of `projection` that the steps of a trace take."""
    d = AbstractDiagram(projection)
    comps = [projection.project(model, s) for s in states]
    for k, lab in enumerate(labels):
        d.add_step(comps[k], comps[k + 1], lab)
    return set(d.edges)


@dataclass(frozen=True)
class Difference:
    """One way two revisions' diagrams of the same projection differ."""

    projection: str
    kind: str  # "node", "detail", "edge" or "label"
    only_in: str  # the revision that has it
    item: str  # the node, "node: detail", "src -> dst" or "src -> dst: label"


def differences(a: AbstractDiagram, rev_a: str, b: AbstractDiagram,
                rev_b: str) -> list[Difference]:
    """Everything one revision's diagram has and the other's lacks (same projection)."""
    name = a.projection.name
    out: list[Difference] = []
    for x, y, rev in ((a, b, rev_a), (b, a, rev_b)):
        for v in sorted(set(x.nodes) - set(y.nodes)):
            out.append(Difference(name, "node", rev, v))
        for v in sorted(set(x.nodes) & set(y.nodes)):
            for det in sorted(x.nodes[v] - y.nodes[v]):
                out.append(Difference(name, "detail", rev, f"{v}: {det}"))
        for e in sorted(set(x.edges) - set(y.edges)):
            out.append(Difference(name, "edge", rev, f"{e[0]} -> {e[1]}"))
        for e in sorted(set(x.edges) & set(y.edges)):
            for lab in sorted(x.edges[e] - y.edges[e]):
                out.append(Difference(name, "label", rev, f"{e[0]} -> {e[1]}: {lab}"))
    return out
