"""Saga `instance-migrate` (SPEC §4.4), nodes 0–8.

SET_MIGRATION_IDS deliberately has no undo: the ids stay until an update saga clears them or a
later migrate overwrites them through alternative (c) (target SagaUnwound, migration
Failed/Failed). The `migrate-unwind-clears-ids` mutant adds the undo that clears them.
"""

from __future__ import annotations

from typing import Any

from impl.errors import SledAgentError, SledUnavailable
from impl.executor.context import SagaContext
from impl.executor.dag import Node
from impl.sagas.instance_start import unwind_vmm_record
from model.vocab import VmmState

NAME = "instance-migrate"


def _iid(ctx: SagaContext) -> str:
    return str(ctx.params["instance_id"])


def migrate_id(ctx: SagaContext) -> str:
    return ctx.new_id()


def dst_propolis_id(ctx: SagaContext) -> str:
    return ctx.new_id()


def reserve_resources(ctx: SagaContext) -> str:
    p = ctx.params
    return ctx.datastore.sled_reservation_create(
        ctx.lookup("dst_propolis_id"), p["ncpus"], p["memory"], sled_id=p["dst_sled_id"]
    )


def undo_reserve_resources(ctx: SagaContext) -> None:
    ctx.datastore.sled_reservation_delete(ctx.lookup("dst_propolis_id"))


def allocate_propolis_ip(ctx: SagaContext) -> str:
    return ctx.nexus.fleet.sled(ctx.lookup("dst_sled_id")).ip


def create_vmm_record(ctx: SagaContext) -> dict[str, Any]:
    state = VmmState.CREATING if ctx.datastore.revision == "rfd486" else VmmState.MIGRATING
    rec = ctx.datastore.vmm_insert(
        ctx.lookup("dst_propolis_id"), _iid(ctx), ctx.lookup("dst_sled_id"), ctx.lookup("dst_propolis_ip"), state
    )
    return {"gen": rec.state_generation}


def undo_create_vmm_record(ctx: SagaContext) -> None:
    unwind_vmm_record(ctx, ctx.lookup("dst_propolis_id"), ctx.lookup("dst_vmm_record")["gen"])


def create_migration_record(ctx: SagaContext) -> str:
    rec = ctx.datastore.migration_insert(
        ctx.lookup("migrate_id"), _iid(ctx), ctx.params["src_propolis_id"], ctx.lookup("dst_propolis_id")
    )
    return rec.id


def undo_create_migration_record(ctx: SagaContext) -> None:
    """`migration_mark_failed`: both sides Failed, no condition; errors logged and ignored."""
    try:
        ctx.datastore.migration_mark_failed(ctx.lookup("migrate_id"))
    except Exception:  # noqa: BLE001 - the SPEC says errors are ignored here
        pass


def set_migration_ids(ctx: SagaContext) -> dict[str, Any]:
    rec = ctx.datastore.instance_set_migration_ids(
        _iid(ctx), ctx.params["src_propolis_id"], ctx.lookup("migrate_id"), ctx.lookup("dst_propolis_id")
    )
    return {"gen": rec.state_generation}


def undo_set_migration_ids_mutant(ctx: SagaContext) -> None:
    ctx.datastore.instance_clear_migration_ids(_iid(ctx), ctx.lookup("migrate_id"))


def ensure_destination_propolis(ctx: SagaContext) -> bool:
    ds = ctx.datastore
    pid = ctx.lookup("dst_propolis_id")
    vmm = ds.vmm_fetch(pid)
    assert vmm is not None
    rep = ctx.nexus.sled_call(
        ctx.lookup("dst_sled_id"),
        "instance_register",
        pid,
        _iid(ctx),
        vmm.state,
        vmm.state_generation,
        ctx.lookup("migrate_id"),
        ctx.params["src_propolis_id"],
    )
    ctx.nexus.notify_instance_updated(rep)
    return True


def undo_ensure_destination_propolis(ctx: SagaContext) -> None:
    """Unregister the target: a healthy error counts as done, an unhealthy one fails the undo."""
    try:
        rep = ctx.nexus.sled_call(ctx.lookup("dst_sled_id"), "instance_unregister", ctx.lookup("dst_propolis_id"))
    except SledUnavailable:
        raise
    except SledAgentError:
        return
    if rep is not None:
        ctx.nexus.notify_instance_updated(rep)


def instance_migrate(ctx: SagaContext) -> bool:
    rep = ctx.nexus.sled_call(
        ctx.lookup("dst_sled_id"),
        "instance_migrate",
        ctx.lookup("dst_propolis_id"),
        ctx.params["src_propolis_id"],
        ctx.lookup("migrate_id"),
    )
    ctx.nexus.notify_instance_updated(rep)
    return True


def build(params: dict[str, Any]) -> list[Node]:
    mutant_undo = "migrate-unwind-clears-ids" in params.get("mutants", [])
    return [
        Node("migrate_id", migrate_id),
        Node("dst_propolis_id", dst_propolis_id),
        Node("dst_sled_id", reserve_resources, undo_reserve_resources),
        Node("dst_propolis_ip", allocate_propolis_ip),
        Node("dst_vmm_record", create_vmm_record, undo_create_vmm_record),
        Node("migration_record", create_migration_record, undo_create_migration_record),
        Node("set_migration_ids", set_migration_ids, undo_set_migration_ids_mutant if mutant_undo else None),
        Node("ensure_destination_propolis", ensure_destination_propolis, undo_ensure_destination_propolis),
        Node("instance_migrate", instance_migrate),
    ]
