"""Instance-row queries (SPEC §1.1, §4.2–§4.5, §4.7, §4.10, §4.11).

Every conditional write is one `UPDATE` whose `WHERE` clause carries exactly the SPEC's
conditions; reads that follow a failed write only classify the outcome.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, Update, and_, bindparam, exists, or_, select, update

from impl.datastore import schema as s
from impl.datastore.base import DatastoreBase, instance_from_row, migration_from_row, vmm_from_row
from impl.datastore.enums import db_name, names
from impl.datastore.records import InstanceRecord, InstanceRuntime, InstanceSnapshot, now
from impl.errors import BadRequest, Conflict, NotFound
from model.vocab import MIGRATION_TERMINAL, InstanceState, MigrationState, VmmState

i = s.instance


def runtime_values(new: InstanceRuntime, lock_in_runtime: bool) -> dict[str, Any]:
    """The columns an `InstanceRuntimeState` write overwrites (SPEC §1.1, treat_none_as_null).

    With the `lock-in-runtime-state` mutant the lock columns read earlier ride along (#5831).
    """
    values: dict[str, Any] = {
        "state": db_name(new.nexus_state),
        "state_generation": new.gen,
        "time_state_updated": new.time_updated,
        "active_propolis_id": new.propolis_id,
        "target_propolis_id": new.dst_propolis_id,
        "migration_id": new.migration_id,
    }
    if lock_in_runtime and new.read_updater_gen is not None:
        values["updater_id"] = new.read_updater_id
        values["updater_gen"] = new.read_updater_gen
    return values


def _fetch_all_query(include_deleted: bool) -> Select[Any]:
    """The `instance_fetch_all` statement (built once per variant: it is the hot read)."""
    av = s.vmm.alias("av")
    tv = s.vmm.alias("tv")
    mg = s.migration.alias("mg")
    cols = (
        [c.label("i_" + c.name) for c in i.c]
        + [c.label("a_" + c.name) for c in av.c]
        + [c.label("t_" + c.name) for c in tv.c]
        + [c.label("m_" + c.name) for c in mg.c]
    )
    j = (
        i.outerjoin(av, and_(av.c.id == i.c.active_propolis_id, av.c.time_deleted.is_(None)))
        .outerjoin(tv, and_(tv.c.id == i.c.target_propolis_id, tv.c.time_deleted.is_(None)))
        .outerjoin(mg, and_(mg.c.id == i.c.migration_id, mg.c.time_deleted.is_(None)))
    )
    q = select(*cols).select_from(j).where(i.c.id == bindparam("instance_id"))
    if not include_deleted:
        q = q.where(i.c.time_deleted.is_(None))
    return q


_FETCH_ALL = _fetch_all_query(False)
_FETCH_ALL_WITH_DELETED = _fetch_all_query(True)
_BY_ID = select(i).where(i.c.id == bindparam("b_id"))
_BY_ID_LIVE = _BY_ID.where(i.c.time_deleted.is_(None))


def _runtime_update(lock_in_runtime: bool) -> Update:
    """`instance_update_runtime`'s statement; the values are `runtime_values`' keys."""
    cols = ["state", "state_generation", "time_state_updated", "active_propolis_id",
            "target_propolis_id", "migration_id"]
    if lock_in_runtime:
        cols += ["updater_id", "updater_gen"]
    return (
        update(i)
        .where(i.c.id == bindparam("b_id"), i.c.time_deleted.is_(None), i.c.state_generation < bindparam("b_gen"))
        .values({c: bindparam("v_" + c) for c in cols})
    )


_RUNTIME_UPDATE = {flag: _runtime_update(flag) for flag in (False, True)}


class InstanceQueries(DatastoreBase):
    """Queries on the `instance` table."""

    def instance_create(
        self, instance_id: str, name: str, ncpus: int, memory: int, project_id: str = s.PROJECT_ID
    ) -> InstanceRecord:
        """CREATE_INSTANCE_RECORD (SPEC §4.11): idempotent insert, `Creating`, gen 1, lock gen 1."""
        t = now()
        with self.tx() as conn:
            self.insert_ignore_row(
                conn,
                i,
                dict(
                    id=instance_id,
                    name=name,
                    project_id=project_id,
                    ncpus=ncpus,
                    memory=memory,
                    boot_on_fault=False,
                    time_created=t,
                    time_deleted=None,
                    state=db_name(InstanceState.CREATING),
                    state_generation=1,
                    time_state_updated=t,
                    updater_gen=1,
                ),
            )
            row = conn.execute(_BY_ID, {"b_id": instance_id}).one()
        return instance_from_row(row)

    def instance_fetch(self, instance_id: str, include_deleted: bool = True) -> InstanceRecord | None:
        with self.tx() as conn:
            row = conn.execute(_BY_ID if include_deleted else _BY_ID_LIVE, {"b_id": instance_id}).first()
        return None if row is None else instance_from_row(row)

    def instance_list(self, include_deleted: bool = False) -> list[InstanceRecord]:
        with self.tx() as conn:
            q = select(i).order_by(i.c.id)
            if not include_deleted:
                q = q.where(i.c.time_deleted.is_(None))
            return [instance_from_row(r) for r in conn.execute(q)]

    def instance_update_runtime(self, instance_id: str, new: InstanceRuntime) -> bool:
        """`instance_update_runtime`: CAS on `state_generation < new.gen` (SPEC §4 notation)."""
        values = runtime_values(new, self.has("lock-in-runtime-state"))
        params = {"v_" + k: x for k, x in values.items()}
        params["b_id"], params["b_gen"] = instance_id, new.gen
        with self.tx() as conn:
            return conn.execute(_RUNTIME_UPDATE["updater_id" in values], params).rowcount == 1

    def instance_set_migration_ids(
        self, instance_id: str, src_propolis_id: str, migration_id: str, target_propolis_id: str
    ) -> InstanceRecord:
        """`instance_set_migration_ids` (SPEC §4.4): one UPDATE with alternatives (a)/(b)/(c).

        It bumps `state_generation` and looks at neither the generation nor the lock.
        Raises `Conflict` when no row matched.
        """
        src = s.vmm.alias("src_vmm")
        tgt = s.vmm.alias("cur_target_vmm")
        mig = s.migration.alias("cur_migration")
        src_ok = select(src.c.instance_id).where(
            src.c.id == src_propolis_id,
            src.c.time_deleted.is_(None),
            src.c.state.in_(names((VmmState.RUNNING, VmmState.REBOOTING))),
        )
        alt_a = and_(i.c.migration_id.is_(None), i.c.target_propolis_id.is_(None))
        alt_b = and_(i.c.migration_id == migration_id, i.c.target_propolis_id == target_propolis_id)
        alt_c = and_(
            exists(
                select(tgt.c.id).where(
                    tgt.c.id == i.c.target_propolis_id,
                    tgt.c.state == db_name(VmmState.SAGA_UNWOUND),
                )
            ),
            exists(
                select(mig.c.id).where(
                    mig.c.id == i.c.migration_id,
                    mig.c.source_state == db_name(MigrationState.FAILED),
                    mig.c.target_state == db_name(MigrationState.FAILED),
                )
            ),
        )
        stmt = (
            update(i)
            .where(
                i.c.id == instance_id,
                i.c.time_deleted.is_(None),
                i.c.active_propolis_id == src_propolis_id,
                i.c.id.in_(src_ok),
                or_(alt_a, alt_b, alt_c),
            )
            .values(
                migration_id=migration_id,
                target_propolis_id=target_propolis_id,
                state_generation=i.c.state_generation + 1,
                time_state_updated=now(),
            )
            .returning(*i.c)
        )
        with self.tx() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise Conflict("another migration is already in progress")
        return instance_from_row(row)

    def project_delete_instance(self, instance_id: str) -> None:
        """`project_delete_instance` (SPEC §4.5).

        One UPDATE guarded by `state IN (NoVmm, Failed) AND active_propolis_id IS NULL`; it
        ignores generation, lock and migration ids, and releases nothing (quirk Q3). The
        instance's migrations are then soft-deleted.
        """
        t = now()
        stmt = update(i).where(
            i.c.id == instance_id,
            i.c.time_deleted.is_(None),
            i.c.state.in_(names((InstanceState.NO_VMM, InstanceState.FAILED))),
            i.c.active_propolis_id.is_(None),
        ).values(state=db_name(InstanceState.DESTROYED), time_deleted=t)
        with self.tx() as conn:
            if conn.execute(stmt).rowcount != 1:
                row = conn.execute(select(i).where(i.c.id == instance_id)).first()
                if row is None or row.time_deleted is not None:
                    raise NotFound(f"instance {instance_id} not found")
                if row.active_propolis_id is not None:
                    raise BadRequest("instance is running or has not yet fully stopped")
                raise BadRequest(f"instance cannot be deleted in state {row.state}")
            conn.execute(
                update(s.migration)
                .where(s.migration.c.instance_id == instance_id, s.migration.c.time_deleted.is_(None))
                .values(time_deleted=t)
            )

    def instance_fetch_all(self, instance_id: str, include_deleted: bool = False) -> InstanceSnapshot | None:
        """`instance_fetch_all` (SPEC §4.6): one query, every join requiring `time_deleted IS NULL`."""
        q = _FETCH_ALL_WITH_DELETED if include_deleted else _FETCH_ALL
        with self.tx() as conn:
            row = conn.execute(q, {"instance_id": instance_id}).first()
        if row is None:
            return None
        return InstanceSnapshot(
            instance=instance_from_row(row, "i_"),
            active_vmm=vmm_from_row(row, "a_"),
            target_vmm=vmm_from_row(row, "t_"),
            migration=migration_from_row(row, "m_"),
        )

    def find_instances_by_active_vmm_state(self, state: VmmState) -> list[str]:
        """`find_instances_with_destroyed_active_vmms` / Δ#6455 `..._by_active_vmm_state` (§4.7)."""
        v = s.vmm
        q = (
            select(i.c.id)
            .select_from(i.join(v, v.c.id == i.c.active_propolis_id))
            .where(
                v.c.state == db_name(state),
                v.c.time_deleted.is_(None),
                i.c.time_deleted.is_(None),
                i.c.updater_id.is_(None),
            )
            .order_by(i.c.id)
        )
        with self.tx() as conn:
            return [r[0] for r in conn.execute(q)]

    def find_instances_with_terminated_active_migrations(self) -> list[str]:
        """SPEC §4.7: unlocked instances whose current migration has a terminal side."""
        m = s.migration
        term = names(MIGRATION_TERMINAL)
        q = (
            select(i.c.id)
            .select_from(i.join(m, m.c.id == i.c.migration_id))
            .where(
                i.c.time_deleted.is_(None),
                i.c.migration_id.is_not(None),
                i.c.updater_id.is_(None),
                or_(m.c.target_state.in_(term), m.c.source_state.in_(term)),
            )
            .order_by(i.c.id)
        )
        with self.tx() as conn:
            return [r[0] for r in conn.execute(q)]

    def instance_clear_active_unconditionally(self, instance_id: str) -> bool:
        """Mutant `start-unwind-clears-unconditionally`: the start undo without its gen check."""
        stmt = (
            update(i)
            .where(i.c.id == instance_id, i.c.time_deleted.is_(None))
            .values(
                state=db_name(InstanceState.NO_VMM),
                active_propolis_id=None,
                state_generation=i.c.state_generation + 1,
                time_state_updated=now(),
            )
        )
        with self.tx() as conn:
            return conn.execute(stmt).rowcount == 1

    def instance_clear_migration_ids(self, instance_id: str, migration_id: str) -> bool:
        """Mutant `migrate-unwind-clears-ids`: the pre-#5855 migrate undo clearing its ids."""
        stmt = (
            update(i)
            .where(i.c.id == instance_id, i.c.time_deleted.is_(None), i.c.migration_id == migration_id)
            .values(
                migration_id=None,
                target_propolis_id=None,
                state_generation=i.c.state_generation + 1,
                time_state_updated=now(),
            )
        )
        with self.tx() as conn:
            return conn.execute(stmt).rowcount == 1
