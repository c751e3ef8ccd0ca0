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

from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select

from impl.datastore import schema
from impl.datastore.base import instance_from_row, migration_from_row, vmm_from_row
from model.actions import Model
from model.state import IDLE, NONE, UNWIND
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
    out: Abstract = {n: s[n] for n in observed_vars(model)}
    for key, i in saga_keys(model):
        sd = model.sagas[i]
        slot = key[1] if key[1] is not None else 0
        mode = int(s[sd.var("mode", slot)])
        if mode == IDLE:
            out[saga_label(key)] = "idle"
        else:
            node = sd.nodes[int(s[sd.var("pc", slot)])].name
            out[saga_label(key)] = f"{'UNWIND' if mode == UNWIND else 'FWD'}@{node}"
    return out


def find_run(ctrl: Controller, saga_id: str) -> tuple[SagaExecutor, _Run] | None:
    """The in-memory run of a live saga and the executor that owns it."""
    for nx in ctrl.nexuses.values():
        run = nx.executor._runs.get(saga_id)
        if run is not None:
            return nx.executor, run
    return None


def impl_saga_label(ctrl: Controller, saga_id: str) -> str:
    """`idle` (finished), or the mode and the model node the saga runs next."""
    found = find_run(ctrl, saga_id)
    if found is None:
        return "idle"
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
# built once: statement construction costs more than running them on SQLite
_Q_INSTANCE = select(schema.instance).where(schema.instance.c.id == bindparam("iid"))
_Q_VMMS = select(schema.vmm)
_Q_RESERVATIONS = select(schema.sled_resource.c.id)
_Q_CHARGED = select(_VPR.c.id).where(_VPR.c.id == bindparam("iid"))
_Q_PROJECT_CPUS = select(_VPC.c.cpus_provisioned).where(_VPC.c.collection_type == "project")
_Q_MIGRATIONS = select(schema.migration)


def abstract(ctrl: Controller, model: Model, instance_id: str, slots: SlotMap,
             ncpus: int) -> Abstract:
    """The model variables the database (and the switch) shows, named by slot."""
    cfg = model.cfg
    ds = ctrl.datastore
    sl = _Slots(slots)
    out: Abstract = {}
    iid = {"iid": instance_id}
    with ds.tx() as conn:  # one snapshot of every table the model observes
        irow = conn.execute(_Q_INSTANCE, iid).first()
        vmm_rows = {x.id: x for r in conn.execute(_Q_VMMS) if (x := vmm_from_row(r))}
        reservations = {r.id for r in conn.execute(_Q_RESERVATIONS)}
        charged = conn.execute(_Q_CHARGED, iid).first() is not None
        cpus = conn.execute(_Q_PROJECT_CPUS).scalar_one()
        mig_rows = conn.execute(_Q_MIGRATIONS).all()
    inst = instance_from_row(irow) if irow is not None else None
    if inst is None:
        out["i_state"] = "no instance row"
    else:
        deleted = inst.time_deleted is not None
        out["i_state"] = int(InstanceState.DESTROYED if deleted else inst.state)
        out["i_gen"] = inst.state_generation
        out["i_active"] = sl.vmm(inst.active_propolis_id)
        out["i_target"] = sl.vmm(inst.target_propolis_id)
        out["i_mig"] = sl.mig(inst.migration_id)
        out["i_updater"] = sl.lock(inst.updater_id)
        out["i_ugen"] = inst.updater_gen
    nat = ctrl.fleet.switch.nat.get(instance_id)
    out["i_net"] = sl.vmm(nat.vmm_id if nat else None)
    out["prov_row"] = charged
    out["prov_cnt"] = cpus // ncpus if cpus % ncpus == 0 else f"{cpus} cpus"

    for k in range(cfg.vmms):
        vid = slots.vmms.id(k)
        row = vmm_rows.get(vid) if vid else None
        out[f"v_state.{k}"] = int(row.state) if row else int(VmmState.ABSENT)
        out[f"v_gen.{k}"] = row.state_generation if row else 0
        out[f"v_del.{k}"] = bool(row and row.time_deleted is not None)
        out[f"v_res.{k}"] = vid is not None and vid in reservations
    stray = sorted((set(vmm_rows) | set(reservations)) - set(slots.vmms.to_slot))
    if stray:
        out["unbound VMM records"] = ", ".join(stray)

    migs = {r.id: migration_from_row(r) for r in mig_rows}
    for m in range(cfg.migrations):
        mid = slots.migrations.id(m)
        rec = migs.get(mid) if mid else None
        if rec is None:
            vals: list[Value] = [NONE, NONE, int(MigrationState.ABSENT), 0,
                                 int(MigrationState.ABSENT), 0, False]
        else:
            vals = [sl.vmm(rec.source_propolis_id), sl.vmm(rec.target_propolis_id),
                    int(rec.source_state), rec.source_gen, int(rec.target_state),
                    rec.target_gen, rec.time_deleted is not None]
        for name, v in zip(MIGRATION_VARS, vals, strict=True):
            out[f"{name}.{m}"] = v
    stray = sorted(set(migs) - set(slots.migrations.to_slot))
    if stray:
        out["unbound migration records"] = ", ".join(stray)

    for key, _i in saga_keys(model):
        sid = slots.sagas.get(key)
        out[saga_label(key)] = "idle" if sid is None else impl_saga_label(ctrl, sid)
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
    if base == "i_state":
        return InstanceState(v).name
    if base == "v_state":
        return VmmState(v).name
    if base in ("m_src_st", "m_tgt_st"):
        return MigrationState(v).name
    if base in ("i_active", "i_target", "i_mig", "i_net", "m_src", "m_tgt"):
        return "none" if v == NONE else f"slot {v}"
    return str(v)


__all__ = ["SAGA_NAMES", "abstract", "observe_model", "diff", "describe", "observed_vars"]
