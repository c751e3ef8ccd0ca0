"""Database invariants checked after a run settles (SPEC §6; the stress-test checks).

`quiescent_violations` assumes nothing is in flight: every saga finished, reports delivered,
background tasks run. It returns human-readable violations (empty = all hold).
"""

from __future__ import annotations

from impl.datastore import Datastore
from model.vocab import InstanceState, VmmState, destroyable_states


def record_violations(ds: Datastore) -> list[str]:
    """Invariants 1–2 on every live instance row (hold at any time)."""
    bad = []
    for inst in ds.instance_list():
        if (inst.state == InstanceState.VMM) != (inst.active_propolis_id is not None):
            bad.append(f"{inst.id}: state={inst.state.name} but active_propolis_id={inst.active_propolis_id}")
        if inst.target_propolis_id is not None and inst.migration_id is None:
            bad.append(f"{inst.id}: target_propolis_id without migration_id")
    return bad


def quiescent_violations(ds: Datastore) -> list[str]:
    bad = record_violations(ds)
    live_instances = {i.id: i for i in ds.instance_list()}
    # No lock held.
    for inst in live_instances.values():
        if inst.updater_id is not None:
            bad.append(f"{inst.id}: updater lock still held by {inst.updater_id}")
    # Counters equal the charged instances.
    resources = ds.provisioning_resources()
    cpus = sum(c for c, _ in resources.values())
    ram = sum(r for _, r in resources.values())
    for kind, (c, r) in ds.provisioning_counters().items():
        if (c, r) != (cpus, ram):
            bad.append(f"{kind} counters {(c, r)} != charged instances {(cpus, ram)}")
    vmms = {v.id: v for v in ds.vmm_list()}
    for iid in resources:
        charged = live_instances.get(iid)
        if charged is None:
            bad.append(f"charge left for deleted instance {iid}")
        elif charged.state != InstanceState.VMM:
            bad.append(f"charge held by {iid} in state {charged.state.name}")
    for inst in live_instances.values():
        if inst.active_propolis_id is None:
            continue
        act = vmms.get(inst.active_propolis_id)
        if act is not None and act.state in (VmmState.RUNNING, VmmState.STARTING) and inst.id not in resources:
            bad.append(f"{inst.id}: active VMM {act.state.name} but no charge")
    # Every live VMM reserved; no reservation without a live VMM.
    gone = destroyable_states(ds.revision)
    reservations = ds.sled_reservations()
    for v in vmms.values():
        if v.state not in gone and v.id not in reservations:
            bad.append(f"live VMM {v.id} ({v.state.name}) has no sled reservation")
    for vid in reservations:
        rv = vmms.get(vid)
        if rv is None or rv.state in gone:
            bad.append(f"sled reservation {vid} without a live VMM")
    return bad
