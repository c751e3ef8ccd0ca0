"""The datastore: SQLAlchemy Core queries for SQLite and PostgreSQL (SPEC §1, §4, §5).

`Datastore` gathers the per-concept query classes; each lives in its own module named after
the protocol concept (`updater_lock`, `vmm`, `provisioning`, ...).
"""

from __future__ import annotations

from impl.datastore.effective_state import determine_effective_state
from impl.datastore.instance import InstanceQueries
from impl.datastore.migration import MigrationQueries
from impl.datastore.provisioning import ProvisioningQueries
from impl.datastore.records import InstanceRecord, VmmRecord
from impl.datastore.saga_log import SagaLogQueries
from impl.datastore.sled_reservation import SledReservationQueries
from impl.datastore.updater_lock import UpdaterLockQueries
from impl.datastore.vmm import VmmQueries
from model.vocab import ExternalState


class Datastore(
    UpdaterLockQueries,
    InstanceQueries,
    VmmQueries,
    MigrationQueries,
    ProvisioningQueries,
    SledReservationQueries,
    SagaLogQueries,
):
    """All queries over one engine, with the run's revision and mutants."""

    def instance_effective_state(
        self, instance_id: str
    ) -> tuple[ExternalState, InstanceRecord, VmmRecord | None]:
        """Effective state (SPEC §3) of an instance, deleted or not, and the records behind it."""
        snap = self.instance_fetch_all(instance_id, include_deleted=True)
        if snap is None:
            raise KeyError(instance_id)
        return (
            determine_effective_state(self.revision, snap.instance, snap.active_vmm),
            snap.instance,
            snap.active_vmm,
        )


__all__ = ["Datastore", "determine_effective_state"]
