"""The refinement mapping: from the implementation's database to the model's state variables.

`abstract(...)` reads the database (and the simulated switch's NAT table, the model's
`i_net`) and returns the value every *observed* model variable would have, naming records by
their model slots through the replay's `SlotMap`. `observe_model(...)` projects a model state
onto the same keys, so the two can be compared key by key after every step (`diff`).

Observed: the instance row (`i_state`, `i_gen`, `i_active`, `i_target`, `i_mig`,
`i_updater`, `i_ugen`), the network pointer `i_net`, provisioning (`prov_row`, `prov_cnt`),
every VMM slot (`v_state`, `v_gen`, `v_del`, `v_res`), every migration slot (`m_src`,
`m_tgt`, `m_src_st`, `m_src_gen`, `m_tgt_st`, `m_tgt_gen`, `m_del`) and, for every saga slot,
its mode and the model node it will run next (`saga:st.0` = `FWD@ALLOC_SERVER`, `idle`, ...).
Not observed: `v_alloc`, `m_alloc`, `next_uuid` (id bookkeeping of the model), the sled-agent
view `sa_*` and reports `rb_*` (environment, see `conformance/sled.py`), and the saga-log
contents (`st_gen`, `up_locked`, `uc_n*`, `*_rp`, ...); docs/conformance.md explains why.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    CompoundSelect,
    Integer,
    String,
    bindparam,
    case,
    cast,
    literal_column,
    null,
    select,
    union_all,
)

from impl.datastore import schema
from impl.datastore.enums import instance_state, migration_state, vmm_state
from model.actions import Model
from model.state import IDLE, NONE, STUCK, UNWIND
from model.step import State
from model.vocab import InstanceState, MigrationState, VmmState

from .nodes import SAGA_NAMES, group_of
from .slots import SagaKey, SlotMap

if TYPE_CHECKING:
    from impl.controller import Controller
    from impl.executor.saga_executor import SagaExecutor, _Run

Value = int | bool | str
Abstract = dict[str, Value]

INSTANCE_VARS = ("i_state", "i_gen", "i_active", "i_target", "i_mig", "i_updater", "i_ugen",
                 "i_net", "prov_row", "prov_cnt")
VMM_VARS = ("v_state", "v_gen", "v_del", "v_res")
MIGRATION_VARS = ("m_src", "m_tgt", "m_src_st", "m_src_gen", "m_tgt_st", "m_tgt_gen", "m_del")


def saga_keys(model: Model) -> list[tuple[SagaKey, int]]:
    """Every saga slot of the model, with the index of its SagaDef in `model.sagas`."""
    out: list[tuple[SagaKey, int]] = []
    for i, sd in enumerate(model.sagas):
        if sd._indexed:
            out += [((sd.prefix, s), i) for s in range(sd.slots)]
        else:
            out.append(((sd.prefix, None), i))
    return out


def saga_label(key: SagaKey) -> str:
    prefix, slot = key
    return f"saga:{prefix}" if slot is None else f"saga:{prefix}.{slot}"


def observed_vars(model: Model) -> list[str]:
    cfg = model.cfg
    names = list(INSTANCE_VARS)
    names += [f"{b}.{k}" for b in VMM_VARS for k in range(cfg.vmms)]
    names += [f"{b}.{m}" for b in MIGRATION_VARS for m in range(cfg.migrations)]
    return names


def observe_model(model: Model, s: State) -> Abstract:
    """The observed part of model state `s`."""
    mk = _keys(model)
    out: Abstract = {n: s[n] for n in mk.observed}
    for _key, label, mode_var, pc_var in mk.sagas:
        mode = int(s[mode_var])
        if mode == IDLE:
            out[label] = "idle"
        elif mode == STUCK:
            out[label] = "stuck"
        else:
            node = mk.nodes[label][int(s[pc_var])]
            out[label] = f"{'UNWIND' if mode == UNWIND else 'FWD'}@{node}"
    return out


def find_run(ctrl: Controller, saga_id: str) -> tuple[SagaExecutor, _Run] | None:
    """The in-memory run of a live saga and the executor that owns it."""
    for nx in ctrl.nexuses.values():
        run = nx.executor._runs.get(saga_id)
        if run is not None:
            return nx.executor, run
    return None


def impl_saga_label(ctrl: Controller, saga_id: str) -> str:
    """`idle` (finished), `stuck` (an undo failed: Steno leaves it for an operator), or the
    mode and the model node the saga runs next."""
    found = find_run(ctrl, saga_id)
    if found is None:
        return "stuck" if _finished_state(ctrl, saga_id) == "stuck" else "idle"
    ex, run = found
    mode = "FWD" if run.mode == "running" else "UNWIND"
    nxt = ex._next(run)
    if nxt is None:
        if run.mode != "running":
            return f"{mode}@(nothing to undo)"
        idx = next(i for i in range(len(run.nodes)) if run.status.get(i) != "succeeded")
    else:
        idx = nxt[0]
    name = run.nodes[idx].name
    return f"{mode}@{group_of(run.name, name) or 'impl:' + name}"


def _finished_state(ctrl: Controller, saga_id: str) -> str | None:
    """How a saga that no executor runs ended: from the executor that finished it, else
    (it finished before a crash) from the saga's row; this runs for every bound saga slot
    at every replay step, so the saga's events are not read."""
    for nx in ctrl.nexuses.values():
        res = nx.executor._results.get(saga_id)
        if res is not None:
            return res.state
    row = ctrl.datastore.saga_fetch(saga_id)
    return None if row is None else row.state


class _Slots:
    def __init__(self, slots: SlotMap) -> None:
        self.s = slots

    def vmm(self, ident: str | None) -> Value:
        k = self.s.vmms.slot(ident, NONE)
        return f"unbound VMM {ident}" if k is None else k

    def mig(self, ident: str | None) -> Value:
        m = self.s.migrations.slot(ident, NONE)
        return f"unbound migration {ident}" if m is None else m

    def lock(self, ident: str | None) -> Value:
        n = self.s.locks.slot(ident, 0)
        return f"unbound lock {ident}" if n is None else n


_VPR = schema.virtual_provisioning_resource
_VPC = schema.virtual_provisioning_collection


def _snapshot_query() -> CompoundSelect:
    """Every record the abstraction reads, as one `UNION ALL` (one statement per step instead
    of one per table): rows `(kind, id, ref1, ref2, ref3, ref4, state1, state2, n1, n2, deleted)`
    where kind is `i` (the instance: state, gen, active, target, migration, updater, updater
    gen), `v` (a VMM: state, gen), `r` (a sled reservation), `p` (the instance's provisioning
    resource), `c` (the project's provisioned cpus in n1) or `m` (a migration: source and target
    ids, states and generations). Columns a kind does not use are typed NULLs."""
    def txt() -> Any:
        return cast(null(), String)

    def num() -> Any:
        return cast(null(), Integer)

    def deleted(col: Any) -> Any:
        return case((col.is_(None), 0), else_=1)

    def kind(k: str) -> Any:
        return literal_column(f"'{k}'", String)

    ins, vmm, mig, res = schema.instance, schema.vmm, schema.migration, schema.sled_resource
    iid: Any = bindparam("iid")
    parts = [
        select(kind("i"), ins.c.id, ins.c.active_propolis_id, ins.c.target_propolis_id,
               ins.c.migration_id, ins.c.updater_id, ins.c.state, txt(),
               ins.c.state_generation, ins.c.updater_gen, deleted(ins.c.time_deleted))
        .where(ins.c.id == iid),
        select(kind("v"), vmm.c.id, txt(), txt(), txt(), txt(), vmm.c.state, txt(),
               vmm.c.state_generation, num(), deleted(vmm.c.time_deleted)),
        select(kind("r"), res.c.id, txt(), txt(), txt(), txt(), txt(), txt(), num(), num(),
               num()),
        select(kind("p"), _VPR.c.id, txt(), txt(), txt(), txt(), txt(), txt(), num(), num(),
               num()).where(_VPR.c.id == iid),
        select(kind("c"), _VPC.c.id, txt(), txt(), txt(), txt(), txt(), txt(),
               _VPC.c.cpus_provisioned, num(), num())
        .where(_VPC.c.collection_type == "project"),
        select(kind("m"), mig.c.id, mig.c.source_propolis_id, mig.c.target_propolis_id, txt(),
               txt(), mig.c.source_state, mig.c.target_state, mig.c.source_gen,
               mig.c.target_gen, deleted(mig.c.time_deleted)),
    ]
    return union_all(*parts)


# built once: statement construction costs more than running it on SQLite
_Q_SNAPSHOT = _snapshot_query()


class _ModelKeys:
    """What `abstract` and `observe_model` need from a model, worked out once per model."""

    def __init__(self, model: Model) -> None:
        self.observed = observed_vars(model)
        self.sagas: list[tuple[SagaKey, str, str, str]] = []  # key, label, mode var, pc var
        for key, i in saga_keys(model):
            sd = model.sagas[i]
            slot = key[1] if key[1] is not None else 0
            self.sagas.append((key, saga_label(key), sd.var("mode", slot), sd.var("pc", slot)))
        self.nodes = {label: [n.name for n in model.sagas[i].nodes]
                      for (key, i), (_k, label, _m, _p) in zip(saga_keys(model), self.sagas,
                                                               strict=True)}
        self.vmm_keys = [(k, f"v_state.{k}", f"v_gen.{k}", f"v_del.{k}", f"v_res.{k}")
                         for k in range(model.cfg.vmms)]
        self.mig_keys = [(m, [f"{name}.{m}" for name in MIGRATION_VARS])
                         for m in range(model.cfg.migrations)]


_MODEL_KEYS: dict[int, tuple[Model, _ModelKeys]] = {}


def _keys(model: Model) -> _ModelKeys:
    hit = _MODEL_KEYS.get(id(model))
    if hit is None or hit[0] is not model:
        hit = _MODEL_KEYS[id(model)] = (model, _ModelKeys(model))
    return hit[1]


_NO_MIGRATION: list[Value] = [NONE, NONE, int(MigrationState.ABSENT), 0,
                              int(MigrationState.ABSENT), 0, False]


def abstract(ctrl: Controller, model: Model, instance_id: str, slots: SlotMap,
             ncpus: int) -> Abstract:
    """The model variables the database (and the switch) shows, named by slot."""
    mk = _keys(model)
    sl = _Slots(slots)
    out: Abstract = {}
    with ctrl.datastore.tx() as conn:  # one snapshot of every table the model observes
        rows = conn.execute(_Q_SNAPSHOT, {"iid": instance_id}).all()
    irow = None
    vmm_rows: dict[str, tuple[str, int, int]] = {}
    reservations: set[str] = set()
    charged = False
    cpus: int | None = None
    migs: dict[str, Any] = {}
    for r in rows:
        kind = r[0]
        if kind == "i":
            irow = r
        elif kind == "v":
            vmm_rows[r[1]] = (r[6], r[8], r[10])
        elif kind == "r":
            reservations.add(r[1])
        elif kind == "p":
            charged = True
        elif kind == "c":
            cpus = r[8]
        else:
            migs[r[1]] = r
    if cpus is None:
        raise LookupError("no project provisioning collection row")
    if irow is None:
        out["i_state"] = "no instance row"
    else:
        out["i_state"] = int(InstanceState.DESTROYED if irow[10] else instance_state(irow[6]))
        out["i_gen"] = irow[8]
        out["i_active"] = sl.vmm(irow[2])
        out["i_target"] = sl.vmm(irow[3])
        out["i_mig"] = sl.mig(irow[4])
        out["i_updater"] = sl.lock(irow[5])
        out["i_ugen"] = irow[9]
    nat = ctrl.fleet.switch.nat.get(instance_id)
    out["i_net"] = sl.vmm(nat.vmm_id if nat else None)
    out["prov_row"] = charged
    out["prov_cnt"] = cpus // ncpus if cpus % ncpus == 0 else f"{cpus} cpus"

    for k, k_state, k_gen, k_del, k_res in mk.vmm_keys:
        vid = slots.vmms.id(k)
        row = vmm_rows.get(vid) if vid else None
        out[k_state] = int(vmm_state(row[0])) if row else int(VmmState.ABSENT)
        out[k_gen] = row[1] if row else 0
        out[k_del] = bool(row and row[2])
        out[k_res] = vid is not None and vid in reservations
    stray = sorted((set(vmm_rows) | reservations) - set(slots.vmms.to_slot))
    if stray:
        out["unbound VMM records"] = ", ".join(stray)

    for m, keys in mk.mig_keys:
        mid = slots.migrations.id(m)
        rec = migs.get(mid) if mid else None
        if rec is None:
            vals = _NO_MIGRATION
        else:
            vals = [sl.vmm(rec[2]), sl.vmm(rec[3]), int(migration_state(rec[6])), rec[8],
                    int(migration_state(rec[7])), rec[9], bool(rec[10])]
        for name, v in zip(keys, vals, strict=True):
            out[name] = v
    stray = sorted(set(migs) - set(slots.migrations.to_slot))
    if stray:
        out["unbound migration records"] = ", ".join(stray)

    for key, label, _mode, _pc in mk.sagas:
        sid = slots.sagas.get(key)
        out[label] = "idle" if sid is None else impl_saga_label(ctrl, sid)
    bound = set(slots.sagas.values())
    live = [sid for nx in ctrl.nexuses.values() for sid in nx.executor._runs if sid not in bound]
    if live:
        out["unbound sagas"] = ", ".join(f"{find_run(ctrl, s)[1].name} {s}" for s in live)  # type: ignore[index]
    return out


def diff(model_view: Abstract, impl_view: Abstract) -> dict[str, tuple[Value | None, Value | None]]:
    """Keys whose values differ (a key missing on one side shows as None)."""
    keys = list(model_view) + [k for k in impl_view if k not in model_view]
    return {k: (model_view.get(k), impl_view.get(k)) for k in keys
            if model_view.get(k) != impl_view.get(k)}


def describe(key: str, v: Value | None) -> str:
    """A value as a human reads it (enum names for state fields)."""
    if isinstance(v, bool) or not isinstance(v, int):
        return repr(v)
    base = key.split(".")[0]
    enum = _ENUM_OF.get(base)
    if enum is not None:
        # a Z3 model value of an unconstrained variable may be any number of its bit width
        try:
            return enum(v).name
        except ValueError:
            return f"{v} (not a {enum.__name__})"
    if base in ("i_active", "i_target", "i_mig", "i_net", "m_src", "m_tgt"):
        return "none" if v == NONE else f"slot {v}"
    return str(v)


_ENUM_OF: dict[str, type[IntEnum]] = {"i_state": InstanceState, "v_state": VmmState,
                                      "m_src_st": MigrationState, "m_tgt_st": MigrationState}


__all__ = ["SAGA_NAMES", "abstract", "observe_model", "diff", "describe", "observed_vars"]
