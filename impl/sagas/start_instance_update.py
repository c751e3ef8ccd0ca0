"""Saga `start-instance-update` (SPEC §4.6): take the lock, snapshot, start the real saga.

The lock is taken with a fresh id L; `AlreadyLocked` is not a failure (output None) and, as in
the code at the baseline (gap G5), nothing is activated then. With the lock, the snapshot is
read, `UpdatesRequired` computed, and either the lock is released (nothing to do) or the child
`instance-update` saga is started and awaited. The wait is in memory: after a crash this node
re-runs and starts another child, whose inherit then fails (race R6).
"""

from __future__ import annotations

from typing import Any

from impl.datastore.records import UpdaterLock
from impl.errors import AlreadyLocked, InternalError, NotFound
from impl.executor.context import SagaContext
from impl.executor.dag import AwaitSaga, Node, SagaResult
from impl.sagas import instance_update
from impl.sagas.common import unwind_instance_lock
from impl.sagas.updates_required import updates_required

NAME = "start-instance-update"


def _iid(ctx: SagaContext) -> str:
    return str(ctx.params["instance_id"])


def saga_instance_lock_id(ctx: SagaContext) -> str:
    return ctx.new_id()


def lock_instance(ctx: SagaContext) -> dict[str, Any] | None:
    try:
        lock = ctx.datastore.instance_updater_lock(_iid(ctx), ctx.lookup("saga_instance_lock_id"))
    except AlreadyLocked:
        return None
    return lock.to_json()


def undo_lock_instance(ctx: SagaContext) -> None:
    out = ctx.lookup("updater_lock")
    if out is not None:
        unwind_instance_lock(ctx, _iid(ctx), UpdaterLock.from_json(out))


def fetch_state_and_start_real_saga(ctx: SagaContext) -> Any:
    out = ctx.lookup("updater_lock")
    if out is None:
        return None
    orig_lock = UpdaterLock.from_json(out)
    ds = ctx.datastore
    snap = ds.instance_fetch_all(_iid(ctx))
    if snap is None:
        # `instance_fetch_all` of a deleted instance is ObjectNotFound: the node fails and the
        # saga unwinds (SPEC §4.6 node 3; found by conformance replay).
        raise NotFound(f"instance {_iid(ctx)} not found")
    update = updates_required(snap, ds.revision, ds.config.mutants)
    if update is None:
        ds.instance_updater_unlock(_iid(ctx), orig_lock)
        return None
    try:
        child = ctx.nexus.start_saga(
            instance_update.NAME,
            {
                "instance_id": _iid(ctx),
                "update": update.to_json(),
                "orig_lock": orig_lock.to_json(),
                "mutants": sorted(ds.config.mutants),
            },
        )
    except Exception:
        ctx.nexus.activate("instance_updater")
        raise

    def finish(res: SagaResult) -> Any:
        if res.succeeded:
            return {"child": res.saga_id}
        if res.failed_node == "updater_lock":
            if res.error_kind == AlreadyLocked.__name__:
                return {"child": res.saga_id, "sibling_won": True}
            raise InternalError(f"child {res.saga_id} could not inherit the lock: {res.error_message}")
        ctx.nexus.activate("instance_updater")
        raise InternalError(f"child {res.saga_id} failed at {res.failed_node}: {res.error_message}")

    return AwaitSaga(child, finish)


def build(params: dict[str, Any]) -> list[Node]:
    return [
        Node("saga_instance_lock_id", saga_instance_lock_id),
        Node("updater_lock", lock_instance, undo_lock_instance),
        Node("fetch_state_and_start_real_saga", fetch_state_and_start_real_saga),
    ]
