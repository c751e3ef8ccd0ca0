"""Pieces several sagas share: lock unwinding and sled-agent error handling."""

from __future__ import annotations

from typing import TYPE_CHECKING

from impl.datastore.records import UpdaterLock
from impl.errors import NotFound

if TYPE_CHECKING:
    from impl.executor.context import SagaContext

UNLOCK_ATTEMPTS = 5


def unwind_instance_lock(ctx: SagaContext, instance_id: str, lock: UpdaterLock) -> None:
    """`unwind_instance_lock` (SPEC §4.6): retry the unlock until it succeeds or ObjectNotFound.

    "Retry forever" is bounded here: a deterministic error repeats, so after a few attempts the
    error propagates and the undo fails (the saga is then stuck, as Steno would leave it).
    """
    for attempt in range(UNLOCK_ATTEMPTS):
        try:
            ctx.datastore.instance_updater_unlock(instance_id, lock)
            return
        except NotFound:
            return
        except Exception:
            if attempt == UNLOCK_ATTEMPTS - 1:
                raise
