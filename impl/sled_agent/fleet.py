"""The simulated rack: sled-agents, the switch's NAT table and the report outbox (SPEC §4.1, §8).

Reports are queued when a VMM changes. The outbox lets a test or the controller deliver any
pending report (reordering), deliver it but keep it queued (duplication), drop it, or let it
fail and be retried: a report stays queued until a Nexus accepts it (a 200 means the DB write
is done), up to `max_attempts` failed pushes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from impl.sled_agent.report import PendingReport, SledVmmState
from impl.sled_agent.sled_agent import SimSledAgent
from impl.sled_agent.vmm import SimVmm


@dataclass(frozen=True)
class NatEntry:
    """The instance's network configuration (DPD/NAT): which VMM and sled it points at."""

    vmm_id: str
    sled_id: str


class Switch:
    """The one abstract network variable of the SPEC: the instance's NAT target."""

    def __init__(self) -> None:
        self.nat: dict[str, NatEntry] = {}
        self._lock = threading.Lock()

    def ensure(self, instance_id: str, vmm_id: str, sled_id: str) -> None:
        with self._lock:
            self.nat[instance_id] = NatEntry(vmm_id, sled_id)

    def delete(self, instance_id: str) -> None:
        with self._lock:
            self.nat.pop(instance_id, None)


class Fleet:
    """All sled-agents plus the switch and the shared report outbox."""

    def __init__(self, sled_ids: list[str], max_attempts: int = 20) -> None:
        self.lock = threading.RLock()
        self.switch = Switch()
        self.outbox: list[PendingReport] = []
        self.max_attempts = max_attempts
        self._next_report = 0
        self.migration_outcome: dict[str, bool] = {}
        self.history: list[tuple[int, str, SledVmmState]] = []
        self.delivered = 0
        self.dropped = 0
        self.sleds: dict[str, SimSledAgent] = {}
        for n, sid in enumerate(sled_ids):
            self.sleds[sid] = SimSledAgent(
                sid, f"fd00:1122:3344:{n + 101}::1", self._emit, self.find_vmm, self._migration_ok
            )

    def _emit(self, sled_id: str, report: SledVmmState) -> None:
        with self.lock:
            self._next_report += 1
            self.outbox.append(PendingReport(self._next_report, sled_id, report))
            self.history.append((self._next_report, sled_id, report))

    def _migration_ok(self, migration_id: str) -> bool:
        return self.migration_outcome.setdefault(migration_id, True)

    def sled(self, sled_id: str) -> SimSledAgent:
        return self.sleds[sled_id]

    def find_vmm(self, vmm_id: str) -> SimVmm | None:
        for sled in self.sleds.values():
            if vmm_id in sled.vmms:
                return sled.vmms[vmm_id]
        return None

    def live_vmms(self) -> list[SimVmm]:
        with self.lock:
            return [v for s in self.sleds.values() for v in s.vmms.values()]

    # ------------------------------------------------------------------ world events
    def advance(self, vmm_id: str, migration_ok: bool | None = None) -> SledVmmState | None:
        with self.lock:
            vmm = self.find_vmm(vmm_id)
            if vmm is None:
                return None
            if migration_ok is not None:
                for side in (vmm.migration_in, vmm.migration_out):
                    if side is not None:
                        self.migration_outcome.setdefault(side.migration_id, migration_ok)
            return self.sleds[vmm.sled_id].advance(vmm_id)

    def advanceable(self) -> list[str]:
        with self.lock:
            return [v.vmm_id for s in self.sleds.values() for v in s.vmms.values() if s.can_advance(v.vmm_id)]

    def fail(self, vmm_id: str) -> SledVmmState | None:
        with self.lock:
            vmm = self.find_vmm(vmm_id)
            return None if vmm is None else self.sleds[vmm.sled_id].fail(vmm_id)

    def destroy(self, vmm_id: str) -> SledVmmState | None:
        with self.lock:
            vmm = self.find_vmm(vmm_id)
            return None if vmm is None else self.sleds[vmm.sled_id].destroy(vmm_id)

    def vanish(self, vmm_id: str) -> bool:
        with self.lock:
            vmm = self.find_vmm(vmm_id)
            return False if vmm is None else self.sleds[vmm.sled_id].vanish(vmm_id)

    # ------------------------------------------------------------------ report delivery
    def pending(self) -> list[PendingReport]:
        with self.lock:
            return list(self.outbox)

    def take(self, report_id: int) -> PendingReport:
        with self.lock:
            for p in self.outbox:
                if p.report_id == report_id:
                    return p
        raise KeyError(f"no pending report {report_id}")

    def _lose(self, p: PendingReport) -> None:
        """`p` is lost for good: the sled-agent restarted (a live one retries until Nexus
        takes it), and with it went an ended VMM's last state."""
        with self.lock:
            if p in self.outbox:
                self.outbox.remove(p)
            self.dropped += 1
            self.sleds[p.sled_id].final_report_taken(p.report)

    def deliver(
        self, report_id: int, push: Callable[[SledVmmState], object], mode: str = "deliver"
    ) -> bool:
        """Push one report (`deliver`, `duplicate` keeps it queued, `drop` discards it).

        Returns True when the push was accepted. A failed push (the Nexus raised) leaves the
        report queued for a retry, until `max_attempts`.
        """
        p = self.take(report_id)
        if mode == "drop":
            self._lose(p)
            return False
        p.attempts += 1
        try:
            push(p.report)
        except Exception:
            if p.attempts >= self.max_attempts:
                self._lose(p)
            return False
        with self.lock:
            self.delivered += 1
            if mode != "duplicate" and p in self.outbox:
                self.outbox.remove(p)
            self.sleds[p.sled_id].final_report_taken(p.report)
        return True
