"""Saga `instance-update`, the real update (SPEC §4.6 table, nodes 1–8).

Its DAG depends on the `UpdatesRequired` it is given. The destroy-VMM sub-sagas are inlined
as `active_vmm_destroyed.*` / `target_vmm_destroyed.*` nodes and come *after* the commit
(invariant 19), except with the `delete-vmm-before-commit` mutant. Chaining happens inside the
commit node, as at the baseline (#6630 later split it out). The only undo releases the lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from impl.datastore.records import UpdaterLock
from impl.errors import NotFound
from impl.executor.context import SagaContext
from impl.executor.dag import Node
from impl.sagas.common import unwind_instance_lock
from impl.sagas.updates_required import UpdatesRequired, updates_required

NAME = "instance-update"


def _iid(ctx: SagaContext) -> str:
    return str(ctx.params["instance_id"])


def _update(ctx: SagaContext) -> UpdatesRequired:
    return UpdatesRequired.from_json(ctx.params["update"])


def saga_instance_lock_id(ctx: SagaContext) -> str:
    return ctx.new_id()


def become_updater(ctx: SagaContext) -> dict[str, Any]:
    orig = UpdaterLock.from_json(ctx.params["orig_lock"])
    lock = ctx.datastore.instance_updater_inherit_lock(_iid(ctx), orig, ctx.lookup("saga_instance_lock_id"))
    return lock.to_json()


def unbecome_updater(ctx: SagaContext) -> None:
    """`siu_unbecome_updater`: release the child's lock, then activate `instance-updater`."""
    unwind_instance_lock(ctx, _iid(ctx), UpdaterLock.from_json(ctx.lookup("updater_lock")))
    ctx.nexus.activate("instance_updater")


def update_network_config(ctx: SagaContext) -> None:
    cfg = _update(ctx).network_config
    assert cfg is not None
    if cfg["kind"] == "delete":
        ctx.nexus.fleet.switch.delete(_iid(ctx))
    else:
        ctx.nexus.fleet.switch.ensure(_iid(ctx), cfg["vmm_id"], cfg["sled_id"])


def release_virtual_provisioning(ctx: SagaContext) -> bool:
    dep = _update(ctx).deprovision
    assert dep is not None
    try:
        return ctx.datastore.virtual_provisioning_collection_delete_instance(
            _iid(ctx), dep["ncpus"], dep["memory"]
        )
    except NotFound:
        return False


def unassign_oximeter_producer(ctx: SagaContext) -> None:
    return None


def commit_instance_updates(ctx: SagaContext) -> dict[str, Any]:
    """Commit-and-release, then chain a successor if the fresh state still needs one."""
    ds = ctx.datastore
    u = _update(ctx)
    lock = UpdaterLock.from_json(ctx.lookup("updater_lock"))
    committed = ds.instance_commit_update(_iid(ctx), lock, u.new_runtime)
    if u.network_config is not None:
        ctx.nexus.activate("v2p_manager")
    chained = None
    try:
        snap = ds.instance_fetch_all(_iid(ctx))
        if snap is not None and updates_required(snap, ds.revision, ds.config.mutants) is not None:
            chained = ctx.nexus.start_saga("start-instance-update", {"instance_id": _iid(ctx)})
    except Exception:  # noqa: BLE001 - chaining failures only activate the background task
        ctx.nexus.activate("instance_updater")
    return {"committed": committed, "chained": chained}


def _release_sled_resources(key: str) -> Callable[[SagaContext], bool]:
    def action(ctx: SagaContext) -> bool:
        vmm_id = getattr(_update(ctx), key)
        return ctx.datastore.sled_reservation_delete(vmm_id)

    return action


def _mark_vmm_deleted(key: str) -> Callable[[SagaContext], bool]:
    def action(ctx: SagaContext) -> bool:
        return ctx.datastore.vmm_mark_deleted(getattr(_update(ctx), key))

    return action


def build(params: dict[str, Any]) -> list[Node]:
    u = UpdatesRequired.from_json(params["update"])
    nodes = [
        Node("saga_instance_lock_id", saga_instance_lock_id),
        Node("updater_lock", become_updater, unbecome_updater),
    ]
    if u.network_config is not None:
        nodes.append(Node("update_network_config", update_network_config))
    if u.deprovision is not None:
        nodes.append(Node("release_virtual_provisioning", release_virtual_provisioning))
        nodes.append(Node("unassign_oximeter_producer", unassign_oximeter_producer))
    destroy: list[Node] = []
    for prefix, key in (("active_vmm_destroyed", "destroy_active_vmm"), ("target_vmm_destroyed", "destroy_target_vmm")):
        if getattr(u, key) is not None:
            destroy.append(Node(f"{prefix}.release_sled_resources", _release_sled_resources(key)))
            destroy.append(Node(f"{prefix}.mark_vmm_deleted", _mark_vmm_deleted(key)))
    commit = Node("commit_instance_updates", commit_instance_updates)
    if "delete-vmm-before-commit" in params.get("mutants", []):
        return nodes + destroy + [commit]
    return nodes + [commit] + destroy
