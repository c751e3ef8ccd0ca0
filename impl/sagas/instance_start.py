"""Saga `instance-start` (SPEC §4.2), ten nodes with their undo actions.

Revision differences: the VMM record starts `Creating` in rfd486 (Δ #6455) and the node-4 undo
is the unconditional `vmm_mark_saga_unwound` without a delete; at the baseline the undo is the
generation-guarded SagaUnwound write followed by `vmm_mark_deleted` (gap G3). Baseline
unregister is keyed by instance id (Δ #6429 keyed it by VMM id).
"""

from __future__ import annotations

from typing import Any

from impl.datastore.records import InstanceRuntime, now
from impl.errors import Conflict, NotFound, SledAgentError, SledUnavailable
from impl.executor.context import SagaContext
from impl.executor.dag import Node
from model.vocab import InstanceState, VmmState

NAME = "instance-start"


def _iid(ctx: SagaContext) -> str:
    return str(ctx.params["instance_id"])


def generate_propolis_id(ctx: SagaContext) -> str:
    return ctx.new_id()


def alloc_server(ctx: SagaContext) -> str:
    # SPEC §4.2 node 2 does not look at the instance: its size comes from the saga's
    # parameters in omicron, so a soft-deleted row still serves (conformance replay).
    inst = ctx.datastore.instance_fetch(_iid(ctx), include_deleted=True)
    if inst is None:
        raise NotFound(f"instance {_iid(ctx)} not found")
    return ctx.datastore.sled_reservation_create(ctx.lookup("propolis_id"), inst.ncpus, inst.memory)


def undo_alloc_server(ctx: SagaContext) -> None:
    ctx.datastore.sled_reservation_delete(ctx.lookup("propolis_id"))


def alloc_propolis_ip(ctx: SagaContext) -> str:
    return ctx.nexus.fleet.sled(ctx.lookup("sled_id")).ip


def create_vmm_record(ctx: SagaContext) -> dict[str, Any]:
    state = VmmState.CREATING if ctx.datastore.revision == "rfd486" else VmmState.STARTING
    rec = ctx.datastore.vmm_insert(
        ctx.lookup("propolis_id"), _iid(ctx), ctx.lookup("sled_id"), ctx.lookup("propolis_ip"), state
    )
    return {"gen": rec.state_generation}


def unwind_vmm_record(ctx: SagaContext, vmm_id: str, inserted_gen: int) -> None:
    """Start/migrate node-4 undo: SagaUnwound (per revision), then baseline `vmm_mark_deleted`."""
    ds = ctx.datastore
    ds.vmm_mark_saga_unwound(vmm_id, inserted_gen)
    if ds.revision == "baseline":
        ds.vmm_mark_deleted(vmm_id)


def undo_create_vmm_record(ctx: SagaContext) -> None:
    unwind_vmm_record(ctx, ctx.lookup("propolis_id"), ctx.lookup("vmm_record")["gen"])


def mark_as_starting(ctx: SagaContext) -> dict[str, Any]:
    """`sis_move_to_starting`: claim the active-VMM slot with a CAS on the instance generation."""
    ds = ctx.datastore
    pid = ctx.lookup("propolis_id")
    snap = ds.instance_fetch_all(_iid(ctx))
    if snap is None:
        raise NotFound(f"instance {_iid(ctx)} not found")
    inst = snap.instance
    if inst.active_propolis_id == pid:
        return inst.runtime.to_json()
    overwrite = False
    if inst.active_propolis_id is not None:
        if snap.active_vmm is not None and snap.active_vmm.state == VmmState.SAGA_UNWOUND:
            overwrite = True
        else:
            raise Conflict(f"instance {inst.id} already has an active VMM {inst.active_propolis_id}")
    new = inst.runtime.with_(
        nexus_state=InstanceState.VMM, propolis_id=pid, gen=inst.state_generation + 1, time_updated=now()
    )
    if not ds.instance_update_runtime(inst.id, new):
        raise Conflict(f"instance {inst.id} changed while starting")
    if overwrite:
        ctx.nexus.activate("abandoned_vmm_reaper")
    return new.to_json()


def undo_mark_as_starting(ctx: SagaContext) -> None:
    """`state=NoVmm, active=NULL` at started gen + 1 (CAS): a no-op if the gen moved on (R9)."""
    ds = ctx.datastore
    started = InstanceRuntime.from_json(ctx.lookup("started_record"))
    if ds.has("start-unwind-clears-unconditionally"):
        ds.instance_clear_active_unconditionally(_iid(ctx))
        return
    new = started.with_(
        nexus_state=InstanceState.NO_VMM, propolis_id=None, gen=started.gen + 1, time_updated=now()
    )
    ds.instance_update_runtime(_iid(ctx), new)


def dpd_ensure(ctx: SagaContext) -> None:
    ctx.nexus.fleet.switch.ensure(_iid(ctx), ctx.lookup("propolis_id"), ctx.lookup("sled_id"))


def undo_dpd_ensure(ctx: SagaContext) -> None:
    ctx.nexus.fleet.switch.delete(_iid(ctx))


def v2p_ensure(ctx: SagaContext) -> None:
    ctx.nexus.activate("v2p_manager")


def undo_v2p_ensure(ctx: SagaContext) -> None:
    ctx.nexus.activate("v2p_manager")


def _handle_sled_error(ctx: SagaContext, e: SledAgentError) -> None:
    """Baseline: an unhealthy sled-agent error marks the instance Failed (SPEC §4.10)."""
    if isinstance(e, SledUnavailable) and ctx.datastore.revision == "baseline":
        inst = ctx.datastore.instance_fetch(_iid(ctx), include_deleted=False)
        if inst is not None:
            ctx.nexus.mark_instance_failed(inst.id, inst.runtime)


def ensure_registered(ctx: SagaContext) -> bool:
    ds = ctx.datastore
    pid = ctx.lookup("propolis_id")
    vmm = ds.vmm_fetch(pid)
    if vmm is None:
        raise NotFound(f"VMM {pid} not found")
    try:
        rep = ctx.nexus.sled_call(
            ctx.lookup("sled_id"), "instance_register", pid, _iid(ctx), vmm.state, vmm.state_generation
        )
    except SledAgentError as e:
        _handle_sled_error(ctx, e)
        raise
    ctx.nexus.notify_instance_updated(rep)
    return True


def undo_ensure_registered(ctx: SagaContext) -> None:
    sled = ctx.lookup("sled_id")
    try:
        if ctx.datastore.revision == "baseline":
            rep = ctx.nexus.sled_call(sled, "instance_unregister_by_instance", _iid(ctx))
        else:
            rep = ctx.nexus.sled_call(sled, "instance_unregister", ctx.lookup("propolis_id"))
    except SledUnavailable as e:
        _handle_sled_error(ctx, e)
        raise
    except SledAgentError:
        return
    if rep is not None:
        ctx.nexus.notify_instance_updated(rep)


def add_virtual_resources(ctx: SagaContext) -> bool:
    # The charge (SPEC §1.4 `VPC-query`) is keyed by instance id and checks no instance
    # state; the size comes from the saga's parameters in omicron.
    inst = ctx.datastore.instance_fetch(_iid(ctx), include_deleted=True)
    if inst is None:
        raise NotFound(f"instance {_iid(ctx)} not found")
    return ctx.datastore.virtual_provisioning_collection_insert_instance(inst.id, inst.ncpus, inst.memory)


def undo_add_virtual_resources(ctx: SagaContext) -> None:
    inst = ctx.datastore.instance_fetch(_iid(ctx))
    cpus, ram = (inst.ncpus, inst.memory) if inst is not None else (0, 0)
    ctx.datastore.virtual_provisioning_collection_delete_instance(_iid(ctx), cpus, ram)


def ensure_running(ctx: SagaContext) -> bool:
    try:
        rep = ctx.nexus.sled_call(ctx.lookup("sled_id"), "instance_put_state", ctx.lookup("propolis_id"), "run")
    except SledAgentError as e:
        _handle_sled_error(ctx, e)
        raise
    ctx.nexus.notify_instance_updated(rep)
    return True


def build(params: dict[str, Any]) -> list[Node]:
    return [
        Node("propolis_id", generate_propolis_id),
        Node("sled_id", alloc_server, undo_alloc_server),
        Node("propolis_ip", alloc_propolis_ip),
        Node("vmm_record", create_vmm_record, undo_create_vmm_record),
        Node("started_record", mark_as_starting, undo_mark_as_starting),
        Node("dpd_ensure", dpd_ensure, undo_dpd_ensure),
        Node("v2p_ensure", v2p_ensure, undo_v2p_ensure),
        Node("ensure_registered", ensure_registered, undo_ensure_registered),
        Node("add_virtual_resources", add_virtual_resources, undo_add_virtual_resources),
        Node("ensure_running", ensure_running),
    ]
