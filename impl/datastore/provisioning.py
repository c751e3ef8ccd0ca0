"""Virtual provisioning charge and release (SPEC §1.4 `VPC-query`), one statement each.

The collection counters move through triggers (see `schema.py`), so they change exactly when
the resource row is inserted or deleted: charging and releasing are idempotent per instance.
"""

from __future__ import annotations

from sqlalchemy import delete, exists, select, update

from impl.datastore import schema as s
from impl.datastore.base import DatastoreBase

r = s.virtual_provisioning_resource
c = s.virtual_provisioning_collection


class ProvisioningQueries(DatastoreBase):
    def virtual_provisioning_collection_insert_instance(
        self, instance_id: str, cpus: int, ram: int
    ) -> bool:
        """Charge: insert the resource row `ON CONFLICT DO NOTHING`; the collections follow.

        Returns True when this call made the charge. No silo quota is modelled.
        """
        with self.tx() as conn:
            values = {"id": instance_id, "cpus_provisioned": cpus, "ram_provisioned": ram, "resource_type": "instance"}
            return self.insert_ignore_row(conn, r, values, returning="id").first() is not None

    def virtual_provisioning_collection_delete_instance(
        self, instance_id: str, cpus: int = 0, ram: int = 0
    ) -> bool:
        """Release: delete the resource row iff it and the instance row exist (no time_deleted filter).

        `release-not-idempotent` (#5042) decrements the collections by (`cpus`, `ram`) even when
        no resource row was deleted.
        """
        with self.tx() as conn:
            n = conn.execute(
                delete(r).where(
                    r.c.id == instance_id,
                    exists(select(s.instance.c.id).where(s.instance.c.id == instance_id)),
                )
            ).rowcount
            if n == 0 and self.has("release-not-idempotent"):
                conn.execute(
                    update(c).values(
                        cpus_provisioned=c.c.cpus_provisioned - cpus,
                        ram_provisioned=c.c.ram_provisioned - ram,
                    )
                )
            return n == 1

    def provisioning_counters(self) -> dict[str, tuple[int, int]]:
        """`collection_type -> (cpus, ram)` for the project, silo and fleet rows."""
        with self.tx() as conn:
            return {
                row.collection_type: (row.cpus_provisioned, row.ram_provisioned)
                for row in conn.execute(select(c))
            }

    def provisioning_resources(self) -> dict[str, tuple[int, int]]:
        """`instance id -> (cpus, ram)` of every charged instance."""
        with self.tx() as conn:
            return {row.id: (row.cpus_provisioned, row.ram_provisioned) for row in conn.execute(select(r))}
