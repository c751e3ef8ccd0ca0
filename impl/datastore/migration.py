"""Migration-row queries (SPEC §1.3, §4.4 node 5)."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update

from impl.datastore import schema as s
from impl.datastore.base import DatastoreBase, migration_from_row
from impl.datastore.enums import db_name
from impl.datastore.records import MigrationRecord, now
from model.vocab import MigrationState

m = s.migration
_BY_ID = select(m).where(m.c.id == bindparam("b_id"))


class MigrationQueries(DatastoreBase):
    def migration_insert(
        self, migration_id: str, instance_id: str, source_propolis_id: str, target_propolis_id: str
    ) -> MigrationRecord:
        """CREATE_MIGRATION_RECORD: both sides `Pending`, both generations 1; idempotent."""
        pending = db_name(MigrationState.PENDING)
        with self.tx() as conn:
            self.insert_ignore_row(
                conn,
                m,
                dict(
                    id=migration_id,
                    instance_id=instance_id,
                    time_created=now(),
                    time_deleted=None,
                    source_state=pending,
                    source_propolis_id=source_propolis_id,
                    source_gen=1,
                    target_state=pending,
                    target_propolis_id=target_propolis_id,
                    target_gen=1,
                ),
            )
            row = conn.execute(_BY_ID, {"b_id": migration_id}).one()
        rec = migration_from_row(row)
        assert rec is not None
        return rec

    def migration_fetch(self, migration_id: str) -> MigrationRecord | None:
        with self.tx() as conn:
            row = conn.execute(_BY_ID, {"b_id": migration_id}).first()
        return None if row is None else migration_from_row(row)

    def migration_mark_failed(self, migration_id: str) -> bool:
        """Undo of CREATE_MIGRATION_RECORD: both sides Failed, gens +1, no other condition."""
        failed = db_name(MigrationState.FAILED)
        t = now()
        with self.tx() as conn:
            return (
                conn.execute(
                    update(m)
                    .where(m.c.id == migration_id, m.c.time_deleted.is_(None))
                    .values(
                        source_state=failed,
                        source_gen=m.c.source_gen + 1,
                        time_source_updated=t,
                        target_state=failed,
                        target_gen=m.c.target_gen + 1,
                        time_target_updated=t,
                    )
                ).rowcount
                == 1
            )
