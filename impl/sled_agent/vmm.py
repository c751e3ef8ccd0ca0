"""One simulated VMM (a Propolis process) on a sled (SPEC §2.1).

Every observable change bumps the VMM generation by one and is queued as a report. When the
VMM ends (Destroyed or Failed) its non-terminal migration sides are marked Failed (that side's
generation +1) before the zone is torn down.
"""

from __future__ import annotations

from dataclasses import dataclass

from impl.datastore.records import MigrationRuntime, VmmRuntime, now
from impl.sled_agent.report import PROPOLIS_TO_VMM, Propolis, SledVmmState
from model.vocab import MIGRATION_TERMINAL, MigrationState


@dataclass
class MigrationSide:
    migration_id: str
    state: MigrationState
    gen: int

    def runtime(self) -> MigrationRuntime:
        return MigrationRuntime(self.migration_id, self.state, self.gen, now())


@dataclass
class SimVmm:
    vmm_id: str
    instance_id: str
    sled_id: str
    propolis: Propolis
    gen: int
    requested: str | None = None  # "run" | "stop" | "reboot"
    migration_in: MigrationSide | None = None
    migration_out: MigrationSide | None = None
    migration_source: str | None = None  # for a target: the source VMM id
    migration_target: str | None = None  # for a source: the target VMM id
    # the peer of this VMM's migration completed its side: the hand-over happened, so this
    # side completes too, even if the peer has ended since
    handed_over: bool = False

    def report(self) -> SledVmmState:
        return SledVmmState(
            instance_id=self.instance_id,
            propolis_id=self.vmm_id,
            vmm_state=VmmRuntime(PROPOLIS_TO_VMM[self.propolis], self.gen, now()),
            migration_in=self.migration_in.runtime() if self.migration_in else None,
            migration_out=self.migration_out.runtime() if self.migration_out else None,
        )

    def set(self, propolis: Propolis) -> None:
        """Observe a Propolis state change: generation +1."""
        self.propolis = propolis
        self.gen += 1
        if propolis in (Propolis.DESTROYED, Propolis.FAILED):
            for side in (self.migration_in, self.migration_out):
                if side is not None and side.state not in MIGRATION_TERMINAL:
                    side.state = MigrationState.FAILED
                    side.gen += 1

    @property
    def ended(self) -> bool:
        return self.propolis in (Propolis.DESTROYED, Propolis.FAILED)
