"""VMM-row queries (SPEC §1.2, §4.1, §4.2 node 4 undo, §4.6 destroy-VMM, §4.8, §4.9)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Update, and_, bindparam, or_, select, update

from impl.datastore import schema as s
from impl.datastore.base import DatastoreBase, vmm_from_row
from impl.datastore.enums import db_name, names
from impl.datastore.records import MigrationRuntime, VmmRecord, VmmRuntime, now
from impl.errors import BadRequest, InternalError, NotFound
from model.vocab import VmmState, destroyable_states, mark_deleted_states

v = s.vmm
m = s.migration
i = s.instance


# the statements of the report path and the by-id read, built once (statement construction
# costs more than running them on SQLite); values go in as parameters
_VMM_BY_ID: Select[Any] = select(v).where(v.c.id == bindparam("b_id"))
_MIGRATION_BY_ID: Select[Any] = select(m).where(m.c.id == bindparam("b_id"))


def _vmm_runtime_update(guard: bool) -> Update:
    conds = [v.c.id == bindparam("b_id"), v.c.time_deleted.is_(None)]
    if guard:
        conds.append(v.c.state_generation < bindparam("b_gen"))
    return update(v).where(*conds).values(
        state=bindparam("b_state"),
        state_generation=bindparam("b_gen"),
        time_state_updated=bindparam("b_time"),
    )


def _migration_side_update(side: str, guard: bool) -> Update:
    gen_col = m.c[f"{side}_gen"]
    pid_col = m.c[f"{side}_propolis_id"]
    conds = [m.c.id == bindparam("b_id"), m.c.time_deleted.is_(None), pid_col == bindparam("b_vmm")]
    if guard:
        conds.append(gen_col < bindparam("b_gen"))
    return update(m).where(*conds).values(
        {
            f"{side}_state": bindparam("b_state"),
            f"{side}_gen": bindparam("b_gen"),
            f"time_{side}_updated": bindparam("b_time"),
        }
    )


_VMM_RUNTIME = {g: _vmm_runtime_update(g) for g in (True, False)}
_MIGRATION_SIDE = {(side, g): _migration_side_update(side, g) for side in ("target", "source") for g in (True, False)}


@dataclass(frozen=True)
class VmmUpdateResult:
    """What `vmm_and_migration_update_runtime` really changed (SPEC §4.1 step 1)."""

    vmm_updated: bool
    migration_in_updated: bool
    migration_out_updated: bool


class VmmQueries(DatastoreBase):
    """Queries on the `vmm` table and the report write path."""

    def vmm_insert(
        self,
        vmm_id: str,
        instance_id: str,
        sled_id: str,
        propolis_ip: str,
        state: VmmState,
        propolis_port: int = 12400,
    ) -> VmmRecord:
        """CREATE_VMM_RECORD (SPEC §4.2/§4.4 node 4): idempotent insert at gen 1."""
        t = now()
        with self.tx() as conn:
            self.insert_ignore_row(
                conn,
                v,
                dict(
                    id=vmm_id,
                    time_created=t,
                    time_deleted=None,
                    instance_id=instance_id,
                    sled_id=sled_id,
                    propolis_ip=propolis_ip,
                    propolis_port=propolis_port,
                    state=db_name(state),
                    state_generation=1,
                    time_state_updated=t,
                ),
            )
            row = conn.execute(_VMM_BY_ID, {"b_id": vmm_id}).one()
        rec = vmm_from_row(row)
        assert rec is not None
        return rec

    def vmm_fetch(self, vmm_id: str) -> VmmRecord | None:
        with self.tx() as conn:
            row = conn.execute(_VMM_BY_ID, {"b_id": vmm_id}).first()
        return None if row is None else vmm_from_row(row)

    def vmm_list(self, include_deleted: bool = False) -> list[VmmRecord]:
        q = select(v).order_by(v.c.id)
        if not include_deleted:
            q = q.where(v.c.time_deleted.is_(None))
        with self.tx() as conn:
            out = [vmm_from_row(r) for r in conn.execute(q)]
        return [x for x in out if x is not None]

    def vmm_update_runtime(self, vmm_id: str, new: VmmRuntime) -> bool:
        """Generation-guarded VMM write (used by Δ#6455 `mark_vmm_failed`, SPEC §4.10)."""
        with self.tx() as conn:
            return (
                conn.execute(
                    update(v)
                    .where(v.c.id == vmm_id, v.c.time_deleted.is_(None), v.c.state_generation < new.gen)
                    .values(
                        state=db_name(new.state),
                        state_generation=new.gen,
                        time_state_updated=new.time_updated,
                    )
                ).rowcount
                == 1
            )

    def vmm_and_migration_update_runtime(
        self,
        vmm_id: str,
        new: VmmRuntime,
        migration_in: MigrationRuntime | None = None,
        migration_out: MigrationRuntime | None = None,
    ) -> VmmUpdateResult:
        """SPEC §4.1 step 1: one transaction, one guarded UPDATE per record / migration side.

        A side is written only if its generation grows and its propolis id is the reporter.
        With `reports-ignore-generation` the generation guards are dropped (R14).
        """
        if migration_in and migration_out and migration_in.migration_id == migration_out.migration_id:
            raise BadRequest("migration_in and migration_out carry the same migration id")
        guard = not self.has("reports-ignore-generation")
        with self.tx() as conn:
            vmm_updated = (
                conn.execute(
                    _VMM_RUNTIME[guard],
                    {"b_id": vmm_id, "b_gen": new.gen, "b_state": db_name(new.state), "b_time": new.time_updated},
                ).rowcount
                == 1
            )
            updated = {}
            for side, mig in (("target", migration_in), ("source", migration_out)):
                if mig is None:
                    updated[side] = False
                    continue
                n = conn.execute(
                    _MIGRATION_SIDE[(side, guard)],
                    {
                        "b_id": mig.migration_id,
                        "b_vmm": vmm_id,
                        "b_gen": mig.gen,
                        "b_state": db_name(mig.state),
                        "b_time": mig.time_updated,
                    },
                ).rowcount
                if n == 0:
                    row = conn.execute(_MIGRATION_BY_ID, {"b_id": mig.migration_id}).first()
                    if row is None or row.time_deleted is not None:
                        raise NotFound(f"migration {mig.migration_id} is gone")
                    if row._mapping[f"{side}_propolis_id"] != vmm_id:
                        raise InternalError(
                            f"VMM {vmm_id} is not the {side} of migration {mig.migration_id}"
                        )
                updated[side] = n == 1
        return VmmUpdateResult(vmm_updated, updated["target"], updated["source"])

    def vmm_mark_saga_unwound(self, vmm_id: str, inserted_gen: int) -> bool:
        """Unwind of CREATE_VMM_RECORD (SPEC §4.2 node 4).

        baseline: `SagaUnwound` at `inserted_gen + 1` guarded by `state_generation < that`;
        rfd486 (`vmm_mark_saga_unwound`): unconditional `gen + 1`, only `time_deleted IS NULL`.
        """
        if self.revision == "baseline":
            stmt = (
                update(v)
                .where(
                    v.c.id == vmm_id,
                    v.c.time_deleted.is_(None),
                    v.c.state_generation < inserted_gen + 1,
                )
                .values(
                    state=db_name(VmmState.SAGA_UNWOUND),
                    state_generation=inserted_gen + 1,
                    time_state_updated=now(),
                )
            )
        else:
            stmt = (
                update(v)
                .where(v.c.id == vmm_id, v.c.time_deleted.is_(None))
                .values(
                    state=db_name(VmmState.SAGA_UNWOUND),
                    state_generation=v.c.state_generation + 1,
                    time_state_updated=now(),
                )
            )
        with self.tx() as conn:
            return conn.execute(stmt).rowcount == 1

    def vmm_mark_deleted(self, vmm_id: str) -> bool:
        """`vmm_mark_deleted`: set `time_deleted` if the state is in the revision's set (G3)."""
        with self.tx() as conn:
            return (
                conn.execute(
                    update(v)
                    .where(
                        v.c.id == vmm_id,
                        v.c.time_deleted.is_(None),
                        v.c.state.in_(names(mark_deleted_states(self.revision))),
                    )
                    .values(time_deleted=now())
                ).rowcount
                == 1
            )

    def vmm_list_abandoned(self) -> list[VmmRecord]:
        """`vmm_list_abandoned` (SPEC §4.8): destroyable, not deleted, unreferenced VMMs."""
        j = v.outerjoin(i, i.c.id == v.c.instance_id)
        q = (
            select(v)
            .select_from(j)
            .where(
                v.c.state.in_(names(destroyable_states(self.revision))),
                v.c.time_deleted.is_(None),
                or_(
                    i.c.id.is_(None),
                    and_(
                        or_(i.c.active_propolis_id.is_(None), i.c.active_propolis_id != v.c.id),
                        or_(i.c.target_propolis_id.is_(None), i.c.target_propolis_id != v.c.id),
                    ),
                ),
            )
            .order_by(v.c.id)
        )
        with self.tx() as conn:
            out = [vmm_from_row(r) for r in conn.execute(q)]
        return [x for x in out if x is not None]

    def vmm_list_for_watcher(self) -> list[VmmRecord]:
        """`instance_and_vmm_list_by_sled_agent` (SPEC §4.9): live VMMs of live instances."""
        q = (
            select(v)
            .select_from(v.join(i, i.c.id == v.c.instance_id))
            .where(v.c.time_deleted.is_(None), i.c.time_deleted.is_(None))
            .order_by(v.c.id)
        )
        if self.revision == "rfd486":
            skip = (VmmState.CREATING, VmmState.SAGA_UNWOUND, VmmState.DESTROYED)
            q = q.where(v.c.state.not_in(names(skip)))
        with self.tx() as conn:
            out = [vmm_from_row(r) for r in conn.execute(q)]
        return [x for x in out if x is not None]
