"""The sled-agent report (`SledInstanceState`, SPEC §2.5) and the Propolis-to-VMM mapping (§2.1)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from impl.datastore.records import MigrationRuntime, VmmRuntime
from model.vocab import VmmState


class Propolis(StrEnum):
    """Propolis's own instance states (SPEC §2.1 table)."""

    CREATING = "creating"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    REBOOTING = "rebooting"
    MIGRATING = "migrating"
    REPAIRING = "repairing"
    FAILED = "failed"
    DESTROYED = "destroyed"


PROPOLIS_TO_VMM: dict[Propolis, VmmState] = {
    Propolis.CREATING: VmmState.STARTING,
    Propolis.STARTING: VmmState.STARTING,
    Propolis.RUNNING: VmmState.RUNNING,
    Propolis.STOPPING: VmmState.STOPPING,
    Propolis.STOPPED: VmmState.STOPPING,  # a real sled-agent never reports Stopped
    Propolis.REBOOTING: VmmState.REBOOTING,
    Propolis.MIGRATING: VmmState.MIGRATING,
    Propolis.REPAIRING: VmmState.RUNNING,
    Propolis.FAILED: VmmState.FAILED,
    Propolis.DESTROYED: VmmState.DESTROYED,
}


@dataclass(frozen=True)
class SledVmmState:
    """What a sled-agent sends Nexus about one VMM (SPEC §2.5)."""

    instance_id: str
    propolis_id: str
    vmm_state: VmmRuntime
    migration_in: MigrationRuntime | None = None
    migration_out: MigrationRuntime | None = None


@dataclass
class PendingReport:
    """A report in a sled-agent's outbox, waiting to be pushed (and retried)."""

    report_id: int
    sled_id: str
    report: SledVmmState
    attempts: int = 0
