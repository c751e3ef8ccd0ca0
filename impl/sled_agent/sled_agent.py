"""A simulated sled-agent: the calls Nexus makes (SPEC §4.2–§4.4, §4.9) and world events.

Nexus-facing calls: `instance_register`, `instance_unregister` (by VMM id, or at the
baseline by instance id — the same-sled hazard #6429 removed), `instance_put_state`,
`instance_get_state` (the instance-watcher's pull). Each returns the VMM's current report,
which Nexus passes to `notify_instance_updated`. Unknown VMMs give 404 `SledNoSuchInstance`;
an `unhealthy` sled gives `SledUnavailable` for every call.

World events (driven by the controller or by the free-running fleet thread): `advance` (one
Propolis transition toward the requested state or through a migration), `fail`, `destroy`,
`vanish`.
Every change is handed to `emit`, the fleet's outbox.
"""

from __future__ import annotations

from collections.abc import Callable

from impl.errors import SledNoSuchInstance, SledUnavailable
from impl.sled_agent.report import Propolis, SledVmmState
from impl.sled_agent.vmm import MigrationSide, SimVmm
from model.vocab import MigrationState, VmmState


class SimSledAgent:
    def __init__(
        self,
        sled_id: str,
        ip: str,
        emit: Callable[[str, SledVmmState], None],
        peer: Callable[[str], SimVmm | None],
        migration_ok: Callable[[str], bool],
    ) -> None:
        self.sled_id = sled_id
        self.ip = ip
        self.vmms: dict[str, SimVmm] = {}
        self.gone: set[str] = set()
        # VMMs that ended (Destroyed, Failed) and whose final report Nexus has not yet taken:
        # like omicron's sled-agent, this one publishes the final state before it forgets the
        # VMM, and until then a state query still answers it (omicron #7282 is the simulated
        # sled-agent that forgot first). Every other call meets a torn-down zone: 404.
        self.ending: dict[str, SimVmm] = {}
        self.unhealthy = False
        self._emit = emit
        self._peer = peer
        self._migration_ok = migration_ok

    # ------------------------------------------------------------------ helpers
    def _check(self) -> None:
        if self.unhealthy:
            raise SledUnavailable(f"sled {self.sled_id} is unreachable")

    def _get(self, vmm_id: str) -> SimVmm:
        self._check()
        vmm = self.vmms.get(vmm_id)
        if vmm is None:
            raise SledNoSuchInstance(f"NO_SUCH_INSTANCE: {vmm_id} on {self.sled_id}")
        return vmm

    def _changed(self, vmm: SimVmm) -> SledVmmState:
        rep = vmm.report()
        self._emit(self.sled_id, rep)
        if vmm.ended:
            self.vmms.pop(vmm.vmm_id, None)
            self.gone.add(vmm.vmm_id)
            self.ending[vmm.vmm_id] = vmm
        return rep

    def final_report_taken(self, rep: SledVmmState) -> None:
        """`rep` left the outbox for good (Nexus took it, or it was lost): when it is the
        final report of an ended VMM, the sled now forgets that VMM (later state queries get
        404)."""
        vmm = self.ending.get(rep.propolis_id)
        if vmm is not None and rep.vmm_state.gen == vmm.gen:
            del self.ending[rep.propolis_id]

    # ------------------------------------------------------------------ Nexus-facing calls
    def instance_register(
        self,
        vmm_id: str,
        instance_id: str,
        state: VmmState,
        gen: int,
        migration_in_id: str | None = None,
        source_vmm_id: str | None = None,
    ) -> SledVmmState:
        """Register a VMM (idempotent). Δ#6455: a `Creating` VMM moves to Starting/Migrating."""
        self._check()
        if vmm_id in self.vmms:
            return self.vmms[vmm_id].report()
        if vmm_id in self.gone:
            raise SledNoSuchInstance(f"VMM {vmm_id} was already torn down")
        target = migration_in_id is not None
        vmm = SimVmm(
            vmm_id,
            instance_id,
            self.sled_id,
            Propolis.MIGRATING if target else Propolis.STARTING,
            gen,
            migration_in=MigrationSide(migration_in_id, MigrationState.PENDING, 1) if migration_in_id else None,
            migration_source=source_vmm_id,
        )
        self.vmms[vmm_id] = vmm
        if state == VmmState.CREATING:
            return self._changed_state(vmm)
        return vmm.report()

    def _changed_state(self, vmm: SimVmm) -> SledVmmState:
        vmm.gen += 1
        return self._changed(vmm)

    def instance_unregister(self, vmm_id: str) -> SledVmmState | None:
        """Tear a VMM down: Destroyed (gen +1), migrations failed; None if unknown."""
        self._check()
        vmm = self.vmms.get(vmm_id)
        if vmm is None:
            return None
        vmm.set(Propolis.DESTROYED)
        return self._changed(vmm)

    def instance_unregister_by_instance(self, instance_id: str) -> SledVmmState | None:
        """Baseline unregister keyed by instance id: hits *any* VMM of the instance here."""
        self._check()
        out = None
        for vmm in [v for v in self.vmms.values() if v.instance_id == instance_id]:
            out = self.instance_unregister(vmm.vmm_id)
        return out

    def instance_put_state(self, vmm_id: str, target: str) -> SledVmmState:
        """Record the requested state ("run", "stop", "reboot"); transitions come from `advance`."""
        vmm = self._get(vmm_id)
        if target == "run":
            vmm.requested = vmm.requested or "run"
        elif target == "stop":
            vmm.requested = "stop"
        elif target == "reboot":
            if vmm.propolis in (Propolis.RUNNING, Propolis.REBOOTING):
                vmm.requested = "reboot"
        else:
            raise ValueError(target)
        return vmm.report()

    def instance_migrate(self, vmm_id: str, source_vmm_id: str, migration_id: str) -> SledVmmState:
        """`instance_request_state(Migrate)` on the target: both sides go InProgress."""
        vmm = self._get(vmm_id)
        if vmm.migration_in is None or vmm.migration_in.migration_id != migration_id:
            raise SledNoSuchInstance(f"VMM {vmm_id} is not the target of {migration_id}")
        if vmm.migration_in.state != MigrationState.PENDING:
            return vmm.report()
        src = self._peer(source_vmm_id)
        if src is None or src.propolis not in (Propolis.RUNNING, Propolis.REBOOTING):
            vmm.migration_in.state = MigrationState.FAILED
            vmm.migration_in.gen += 1
            vmm.set(Propolis.DESTROYED)
            return self._changed(vmm)
        vmm.migration_in.state = MigrationState.IN_PROGRESS
        vmm.migration_in.gen += 1
        src.migration_out = MigrationSide(migration_id, MigrationState.IN_PROGRESS, 2)
        src.migration_target = vmm_id
        src.set(Propolis.MIGRATING)
        src_sled_emit = src.report()
        self._emit(src.sled_id, src_sled_emit)
        return self._changed_state(vmm)

    def instance_get_state(self, vmm_id: str) -> SledVmmState:
        self._check()
        if vmm_id in self.ending:  # ended, its final report not yet taken: the last state
            return self.ending[vmm_id].report()
        return self._get(vmm_id).report()

    # ------------------------------------------------------------------ world events
    def can_advance(self, vmm_id: str) -> bool:
        vmm = self.vmms.get(vmm_id)
        return vmm is not None and self._next(vmm) is not None

    def _next(self, vmm: SimVmm) -> str | None:
        p = vmm.propolis
        if vmm.migration_in is not None and vmm.migration_in.state == MigrationState.IN_PROGRESS:
            return "migrate_in"
        if vmm.migration_out is not None and vmm.migration_out.state == MigrationState.IN_PROGRESS:
            return "migrate_out"
        if vmm.migration_out is not None and vmm.migration_out.state == MigrationState.COMPLETED:
            return "destroy"
        if p == Propolis.STARTING and vmm.requested in ("run", "reboot"):
            return "run"
        if p in (Propolis.STARTING, Propolis.RUNNING, Propolis.REBOOTING) and vmm.requested == "stop":
            return "stopping"
        if p == Propolis.STOPPING:
            return "stopped"
        if p == Propolis.STOPPED:
            return "destroy"
        if p == Propolis.RUNNING and vmm.requested == "reboot":
            return "rebooting"
        if p == Propolis.REBOOTING:
            return "run"
        return None

    def advance(self, vmm_id: str) -> SledVmmState | None:
        """Perform the VMM's next Propolis transition (None if it has nothing to do)."""
        vmm = self.vmms.get(vmm_id)
        if vmm is None:
            return None
        step = self._next(vmm)
        if step is None:
            return None
        if step == "migrate_in":
            assert vmm.migration_in is not None
            src = self._peer(vmm.migration_source) if vmm.migration_source else None
            ok = self._migration_ok(vmm.migration_in.migration_id) and (
                src is not None or vmm.handed_over)
            vmm.migration_in.state = MigrationState.COMPLETED if ok else MigrationState.FAILED
            vmm.migration_in.gen += 1
            vmm.requested = "run"
            if ok and src is not None:
                src.handed_over = True
            vmm.set(Propolis.RUNNING if ok else Propolis.DESTROYED)
        elif step == "migrate_out":
            assert vmm.migration_out is not None
            dst = self._peer(vmm.migration_target) if vmm.migration_target else None
            ok = self._migration_ok(vmm.migration_out.migration_id) and (
                dst is not None or vmm.handed_over)
            vmm.migration_out.state = MigrationState.COMPLETED if ok else MigrationState.FAILED
            vmm.migration_out.gen += 1
            if ok and dst is not None:
                dst.handed_over = True
            vmm.set(Propolis.MIGRATING if ok else Propolis.RUNNING)
        elif step == "run":
            vmm.requested = "run" if vmm.requested == "reboot" else vmm.requested
            vmm.set(Propolis.RUNNING)
        elif step == "stopping":
            vmm.set(Propolis.STOPPING)
        elif step == "stopped":
            vmm.set(Propolis.STOPPED)
        elif step == "destroy":
            vmm.set(Propolis.DESTROYED)
        elif step == "rebooting":
            vmm.set(Propolis.REBOOTING)
        return self._changed(vmm)

    def fail(self, vmm_id: str) -> SledVmmState | None:
        """The VMM fails: Failed (gen +1), migrations failed, zone torn down."""
        vmm = self.vmms.get(vmm_id)
        if vmm is None:
            return None
        vmm.set(Propolis.FAILED)
        return self._changed(vmm)

    def destroy(self, vmm_id: str) -> SledVmmState | None:
        """The VMM's Propolis exits on its own (the guest halted, or the process went away
        cleanly): Destroyed (gen +1), migrations failed, zone torn down."""
        vmm = self.vmms.get(vmm_id)
        if vmm is None:
            return None
        vmm.set(Propolis.DESTROYED)
        return self._changed(vmm)

    def vanish(self, vmm_id: str) -> bool:
        """The VMM disappears silently (the sled forgets it; later calls get 404)."""
        if self.vmms.pop(vmm_id, None) is None:
            return False
        self.gone.add(vmm_id)
        return True
