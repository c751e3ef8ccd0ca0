"""Saga `instance-create`, minimal (SPEC §4.11): record, then move to Stopped.

NICs, SSH keys, IPs and disks are out of scope; only CREATE_INSTANCE_RECORD and MOVE_TO_STOPPED
matter to the lifecycle.
"""

from __future__ import annotations

from typing import Any

from impl.datastore.records import now
from impl.errors import BadRequest, NotFound
from impl.executor.context import SagaContext
from impl.executor.dag import Node
from model.vocab import InstanceState

NAME = "instance-create"


def create_instance_record(ctx: SagaContext) -> dict[str, Any]:
    p = ctx.params
    rec = ctx.datastore.instance_create(p["instance_id"], p["name"], p["ncpus"], p["memory"])
    return {"gen": rec.state_generation}


def undo_create_instance_record(ctx: SagaContext) -> None:
    """Write Failed at gen+1, then `project_delete_instance` (gone = fine)."""
    ds = ctx.datastore
    rec = ds.instance_fetch(ctx.params["instance_id"], include_deleted=False)
    if rec is None:
        return
    rt = rec.runtime.with_(
        nexus_state=InstanceState.FAILED, propolis_id=None, gen=rec.state_generation + 1, time_updated=now()
    )
    ds.instance_update_runtime(rec.id, rt)
    try:
        ds.project_delete_instance(rec.id)
    except (NotFound, BadRequest):
        pass


def move_to_stopped(ctx: SagaContext) -> dict[str, Any]:
    """`state=NoVmm`, gen = record gen + 1 (CAS; stale = no-op; ObjectNotFound = OK)."""
    ds = ctx.datastore
    gen = ctx.lookup("create_instance_record")["gen"]
    rec = ds.instance_fetch(ctx.params["instance_id"], include_deleted=False)
    if rec is None:
        return {"moved": False}
    rt = rec.runtime.with_(nexus_state=InstanceState.NO_VMM, gen=gen + 1, time_updated=now())
    return {"moved": ds.instance_update_runtime(rec.id, rt)}


def build(params: dict[str, Any]) -> list[Node]:
    return [
        Node("create_instance_record", create_instance_record, undo_create_instance_record),
        Node("move_to_stopped", move_to_stopped),
    ]
