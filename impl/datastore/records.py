"""Plain records read from the database (SPEC §1) and the runtime changeset.

`InstanceRuntime` mirrors omicron's `InstanceRuntimeState`: exactly the six columns every
runtime write overwrites (SPEC §1.1). The lock columns are deliberately *not* part of it; they
ride along only so the `lock-in-runtime-state` mutant can write them back (PR #5831's bug).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from model.vocab import InstanceState, MigrationState, VmmState


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class InstanceRuntime:
    """The six runtime columns (SPEC §1.1), plus the lock fields as they were read."""

    nexus_state: InstanceState
    gen: int
    propolis_id: str | None
    dst_propolis_id: str | None
    migration_id: str | None
    time_updated: datetime
    read_updater_id: str | None = None
    read_updater_gen: int | None = None

    def with_(self, **kw: Any) -> InstanceRuntime:
        return replace(self, **kw)

    def to_json(self) -> dict[str, Any]:
        return {
            "nexus_state": self.nexus_state.name,
            "gen": self.gen,
            "propolis_id": self.propolis_id,
            "dst_propolis_id": self.dst_propolis_id,
            "migration_id": self.migration_id,
            "time_updated": self.time_updated.isoformat(),
            "read_updater_id": self.read_updater_id,
            "read_updater_gen": self.read_updater_gen,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> InstanceRuntime:
        return InstanceRuntime(
            nexus_state=InstanceState[d["nexus_state"]],
            gen=d["gen"],
            propolis_id=d["propolis_id"],
            dst_propolis_id=d["dst_propolis_id"],
            migration_id=d["migration_id"],
            time_updated=datetime.fromisoformat(d["time_updated"]),
            read_updater_id=d.get("read_updater_id"),
            read_updater_gen=d.get("read_updater_gen"),
        )


@dataclass(frozen=True)
class InstanceRecord:
    id: str
    name: str
    project_id: str
    ncpus: int
    memory: int
    time_deleted: datetime | None
    state: InstanceState
    state_generation: int
    time_state_updated: datetime
    active_propolis_id: str | None
    target_propolis_id: str | None
    migration_id: str | None
    updater_id: str | None
    updater_gen: int

    @property
    def runtime(self) -> InstanceRuntime:
        return InstanceRuntime(
            nexus_state=self.state,
            gen=self.state_generation,
            propolis_id=self.active_propolis_id,
            dst_propolis_id=self.target_propolis_id,
            migration_id=self.migration_id,
            time_updated=self.time_state_updated,
            read_updater_id=self.updater_id,
            read_updater_gen=self.updater_gen,
        )


@dataclass(frozen=True)
class VmmRuntime:
    """A VMM's runtime triple as the sled-agent reports it (SPEC §2.5)."""

    state: VmmState
    gen: int
    time_updated: datetime


@dataclass(frozen=True)
class VmmRecord:
    id: str
    instance_id: str
    sled_id: str
    propolis_ip: str
    propolis_port: int
    time_deleted: datetime | None
    state: VmmState
    state_generation: int
    time_state_updated: datetime


@dataclass(frozen=True)
class MigrationRecord:
    id: str
    instance_id: str
    time_deleted: datetime | None
    source_state: MigrationState
    source_propolis_id: str
    source_gen: int
    target_state: MigrationState
    target_propolis_id: str
    target_gen: int

    def either_side_failed(self) -> bool:
        return MigrationState.FAILED in (self.source_state, self.target_state)

    def either_side_completed(self) -> bool:
        return MigrationState.COMPLETED in (self.source_state, self.target_state)


@dataclass(frozen=True)
class MigrationRuntime:
    """One side of a migration as a sled-agent reports it (SPEC §2.5)."""

    migration_id: str
    state: MigrationState
    gen: int
    time_updated: datetime


@dataclass(frozen=True)
class InstanceSnapshot:
    """`instance_fetch_all` (SPEC §4.6): instance + active VMM + target VMM + migration."""

    instance: InstanceRecord
    active_vmm: VmmRecord | None
    target_vmm: VmmRecord | None
    migration: MigrationRecord | None


@dataclass(frozen=True)
class UpdaterLock:
    """SPEC §5 `UpdaterLock { updater_id, locked_gen }`, serialized as a saga node output."""

    updater_id: str
    locked_gen: int

    def to_json(self) -> dict[str, Any]:
        return {"updater_id": self.updater_id, "locked_gen": self.locked_gen}

    @staticmethod
    def from_json(d: dict[str, Any]) -> UpdaterLock:
        return UpdaterLock(d["updater_id"], d["locked_gen"])
