"""Sleds and sled reservations (`sled_resource`, PK = VMM id; SPEC §1.4)."""

from __future__ import annotations

from sqlalchemy import Integer, bindparam, delete, func, select

from impl.datastore import schema as s
from impl.datastore.base import DatastoreBase
from impl.errors import InsufficientCapacity

sr = s.sled_resource
sl = s.sled

# built once (statement construction costs more than running them on SQLite)
_SLED_OF = select(sr.c.sled_id).where(sr.c.id == bindparam("b_id"))
_used = select(sr.c.sled_id, func.sum(sr.c.hardware_threads).label("used")).group_by(sr.c.sled_id).subquery()
_LEAST_RESERVED = (
    select(sl.c.id)
    .select_from(sl.outerjoin(_used, _used.c.sled_id == sl.c.id))
    .where(func.coalesce(_used.c.used, 0) + bindparam("b_threads", type_=Integer) <= sl.c.usable_hardware_threads)
    .order_by(func.coalesce(_used.c.used, 0), sl.c.id)
    .limit(1)
)


class SledReservationQueries(DatastoreBase):
    def sled_upsert(self, sled_id: str, ip: str, hardware_threads: int = 128) -> None:
        with self.tx() as conn:
            self.insert_ignore_row(conn, sl, {"id": sled_id, "ip": ip, "usable_hardware_threads": hardware_threads})

    def sled_reservation_create(
        self, vmm_id: str, hardware_threads: int, ram: int, sled_id: str | None = None
    ) -> str:
        """Reserve resources for VMM `vmm_id`, idempotently: an existing row is returned as is.

        Without `sled_id` the least-reserved sled is chosen (ties by sled id), which stands in
        for `reserve_on_random_sled` deterministically.
        """
        with self.tx() as conn:
            have = conn.execute(_SLED_OF, {"b_id": vmm_id}).first()
            if have is not None:
                return str(have[0])
            if sled_id is None:
                row = conn.execute(_LEAST_RESERVED, {"b_threads": hardware_threads}).first()
                if row is None:
                    raise InsufficientCapacity("no sled has room for this VMM")
                sled_id = str(row[0])
            self.insert_ignore_row(
                conn,
                sr,
                dict(
                    id=vmm_id,
                    sled_id=sled_id,
                    hardware_threads=hardware_threads,
                    rss_ram=0,
                    reservoir_ram=ram,
                    kind="instance",
                ),
            )
            return str(conn.execute(_SLED_OF, {"b_id": vmm_id}).scalar_one())

    def sled_reservation_delete(self, vmm_id: str) -> bool:
        """`sled_reservation_delete`: a plain DELETE by VMM id, hence idempotent."""
        with self.tx() as conn:
            return conn.execute(delete(sr).where(sr.c.id == vmm_id)).rowcount == 1

    def sled_reservations(self) -> dict[str, str]:
        """`vmm id -> sled id` of every reservation."""
        with self.tx() as conn:
            return {row.id: row.sled_id for row in conn.execute(select(sr))}
