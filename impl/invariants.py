"""Database invariants checked after a run settles (SPEC §6; the stress-test checks).

`quiescent_violations` assumes nothing is in flight: every saga finished, reports delivered,
background tasks run. It returns human-readable violations (empty = all hold).
"""

from __future__ import annotations

from collections.abc import Collection

from impl.datastore import Datastore
from impl.datastore.records import VmmRecord
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


def stale_vmm_records(ds: Datastore, on_sleds: Collection[str]) -> list[VmmRecord]:
    """Baseline VMM rows left in a live state for a VMM that no longer exists (SPEC §7 G3).

    A row qualifies when the revision is `baseline`, its state is not destroyable, no live
    instance names it as active or target VMM, and no sled holds it (`on_sleds`: the ids of
    the VMMs the sled-agents still run). Such a row arises when the VMM's own start or
    migrate saga unwinds after the sled tore the VMM down (e.g. a stop raced the start) and
    the sled's last report for it (`Destroyed`) is lost:

    * the unwind releases the reservation (ALLOC_SERVER / RESERVE_RESOURCES undo, §4.2 and
      §4.4 node 2), unlinks the VMM (MARK_AS_STARTING undo) and finds nothing to unregister;
    * the baseline SagaUnwound write is guarded by the *database* generation only (§4.2 node
      4, G3): it does nothing once a report moved that generation, and a report with a larger
      generation delivered after it overwrites it, so the row ends in the last state the
      sled reported (Stopping, say);
    * nothing corrects that row: the baseline watcher only counts the sled's 404 (§4.9; §8
      "the baseline has no recovery") and the reaper takes only destroyable states (§4.8).

    The row then stands for no VMM, and no sled capacity is in use without a reservation.
    Δ #6455 (rfd486) closes the hole (the watcher reports such a VMM Failed, the reaper then
    deletes it), so this is never excused there.
    """
    if ds.revision != "baseline":
        return []
    gone = destroyable_states(ds.revision)
    held = set(on_sleds)
    linked = {x for i in ds.instance_list() for x in (i.active_propolis_id, i.target_propolis_id)}
    return [v for v in ds.vmm_list()
            if v.state not in gone and v.id not in linked and v.id not in held]


def quiescent_violations(ds: Datastore, on_sleds: Collection[str] | None = None) -> list[str]:
    """The stress-test invariants (see the module docstring).

    With `on_sleds` (the VMM ids the sled-agents still run), a baseline VMM row that
    `stale_vmm_records` finds is not required to hold a sled reservation: it stands for no
    VMM, so nothing is running unreserved. Without it the check is strict. A VMM that is
    still linked by its instance, or still on its sled, always needs its reservation.
    """
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
    stale = set() if on_sleds is None else {v.id for v in stale_vmm_records(ds, on_sleds)}
    for v in vmms.values():
        if v.state not in gone and v.id not in reservations and v.id not in stale:
            bad.append(f"live VMM {v.id} ({v.state.name}) has no sled reservation")
    for vid in reservations:
        rv = vmms.get(vid)
        if rv is None or rv.state in gone:
            bad.append(f"sled reservation {vid} without a live VMM")
    return bad
