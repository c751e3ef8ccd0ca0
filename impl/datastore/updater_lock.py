"""The instance-updater lock (SPEC §5): acquire, inherit, release, commit-and-release.

Each write is one UPDATE that compares `updater_gen` (and `updater_id`), so every lock-column
write is a compare-and-swap. With the `no-updater-lock` mutant the functions keep their
signatures but neither take nor check the lock (SPEC mutant table).
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from impl.datastore import schema as s
from impl.datastore.base import DatastoreBase
from impl.datastore.instance import runtime_values
from impl.datastore.records import InstanceRuntime, UpdaterLock
from impl.errors import AlreadyLocked, Conflict, InternalError, NotFound, UpdaterLockError

log = logging.getLogger(__name__)
i = s.instance


class UpdaterLockQueries(DatastoreBase):
    """`instance_updater_lock`, `..._inherit_lock`, `..._unlock`, `instance_commit_update`."""

    def _lock_row(self, instance_id: str) -> tuple[str | None, int, bool] | None:
        with self.tx() as conn:
            row = conn.execute(
                select(i.c.updater_id, i.c.updater_gen, i.c.time_deleted).where(i.c.id == instance_id)
            ).first()
        if row is None:
            return None
        return row.updater_id, row.updater_gen, row.time_deleted is not None

    def instance_updater_lock(self, instance_id: str, lock_id: str) -> UpdaterLock:
        """Acquire (SPEC §5): re-read, idempotent re-lock, else CAS `updater_gen = g`; loop."""
        while True:
            found = self._lock_row(instance_id)
            if found is None or found[2]:
                raise UpdaterLockError(f"instance {instance_id} not found")
            holder, gen, _ = found
            if self.has("no-updater-lock"):
                return UpdaterLock(lock_id, gen)
            if holder == lock_id:
                return UpdaterLock(lock_id, gen)
            if holder is not None:
                raise AlreadyLocked(f"instance {instance_id} locked by {holder}")
            with self.tx() as conn:
                conn.execute(
                    update(i)
                    .where(i.c.id == instance_id, i.c.time_deleted.is_(None), i.c.updater_gen == gen)
                    .values(updater_gen=gen + 1, updater_id=lock_id)
                )

    def instance_updater_inherit_lock(
        self, instance_id: str, parent: UpdaterLock, child_id: str
    ) -> UpdaterLock:
        """Inherit (SPEC §5): CAS from `{P, g}` to `{C, g+1}`; idempotent for the same child."""
        if self.has("no-updater-lock"):
            return UpdaterLock(child_id, parent.locked_gen + 1)
        g = parent.locked_gen
        with self.tx() as conn:
            n = conn.execute(
                update(i)
                .where(
                    i.c.id == instance_id,
                    i.c.time_deleted.is_(None),
                    i.c.updater_gen == g,
                    i.c.updater_id == parent.updater_id,
                )
                .values(updater_gen=g + 1, updater_id=child_id)
            ).rowcount
        if n == 1:
            return UpdaterLock(child_id, g + 1)
        found = self._lock_row(instance_id)
        if found is None:
            raise UpdaterLockError(f"instance {instance_id} not found")
        if found[0] == child_id:
            return UpdaterLock(child_id, g + 1)
        # SPEC §5: anything else, a soft-deleted instance included, is AlreadyLocked, which
        # the parent saga takes as "a sibling already inherited" and finishes (§4.6)
        raise AlreadyLocked(f"instance {instance_id}: lock not inheritable from {parent}"
                            + (" (instance deleted)" if found[2] else ""))

    def instance_updater_unlock(self, instance_id: str, lock: UpdaterLock) -> bool:
        """Release (SPEC §5): only the holder `{L, g}` can release; a second release is a no-op.

        Returns True when this call released the lock; False when the instance is deleted or the
        lock has moved on. Raises `NotFound` when the row does not exist at all and
        `InternalError` when the id matches but the generation does not.
        """
        if self.has("no-updater-lock"):
            return True
        if self.has("unlock-ignores-holder"):
            stmt = (
                update(i)
                .where(i.c.id == instance_id, i.c.time_deleted.is_(None))
                .values(updater_gen=i.c.updater_gen + 1, updater_id=None)
            )
        else:
            stmt = (
                update(i)
                .where(
                    i.c.id == instance_id,
                    i.c.time_deleted.is_(None),
                    i.c.updater_id == lock.updater_id,
                    i.c.updater_gen == lock.locked_gen,
                )
                .values(updater_gen=lock.locked_gen + 1, updater_id=None)
            )
        with self.tx() as conn:
            n = conn.execute(stmt).rowcount
        if n == 1:
            return True
        found = self._lock_row(instance_id)
        if found is None:
            raise NotFound(f"instance {instance_id} not found")
        holder, gen, deleted = found
        if deleted:
            return False
        if holder != lock.updater_id:
            if gen > lock.locked_gen:
                log.debug("unlock of %s: already released or now held by %s", instance_id, holder)
            else:
                log.warning("unlock of %s: odd lock state %s/%s for %s", instance_id, holder, gen, lock)
            return False
        raise InternalError(f"instance {instance_id}: lock {lock} held at generation {gen}")

    def instance_commit_update(
        self, instance_id: str, lock: UpdaterLock, new: InstanceRuntime
    ) -> bool:
        """Commit-and-release (SPEC §5): runtime write and unlock in one guarded UPDATE.

        Returns True when applied, False for a replay of a commit that already succeeded.
        Raises `NotFound` (deleted), `Conflict` ("instance state has changed") or `InternalError`.
        """
        values = runtime_values(new, self.has("lock-in-runtime-state"))
        conds = [i.c.id == instance_id, i.c.time_deleted.is_(None)]
        if not self.has("no-updater-lock"):
            conds += [i.c.updater_id == lock.updater_id, i.c.updater_gen == lock.locked_gen]
            values["updater_gen"] = lock.locked_gen + 1
            values["updater_id"] = None
        if not self.has("commit-ignores-generation"):
            conds.append(i.c.state_generation < new.gen)
        with self.tx() as conn:
            n = conn.execute(update(i).where(*conds).values(**values)).rowcount
            row = None if n == 1 else conn.execute(select(i).where(i.c.id == instance_id)).first()
        if n == 1:
            return True
        if row is None or row.time_deleted is not None:
            raise NotFound(f"instance {instance_id} not found")
        prev = new.gen - 1
        if row.state_generation != prev:
            if row.updater_gen != lock.locked_gen or self.has("no-updater-lock"):
                return False
            if row.updater_id == lock.updater_id:
                raise Conflict("instance state has changed")
        raise InternalError(
            f"instance {instance_id}: commit with {lock} found lock "
            f"{row.updater_id}/{row.updater_gen}, state gen {row.state_generation}"
        )
