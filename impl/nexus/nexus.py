"""One Nexus replica (SPEC §4): external operations, the report path, failure marking,
background tasks, and its saga executor; runnable step by step, or with threads
(impl/nexus/free_running.py).

External operations check the SPEC's advisory preconditions and raise `Conflict`,
`BadRequest`, `NotFound` or `InternalError` without changing anything when they refuse. A
saga-backed operation returns the saga id; whoever drives the replica (the controller, or the
runner thread) executes it. `crash()` drops all in-memory state; `recover()` replays the log.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from impl.background import abandoned_vmm_reaper, instance_updater, instance_watcher
from impl.config import LifecycleConfig
from impl.datastore import Datastore, determine_effective_state
from impl.datastore.records import (
    InstanceRuntime,
    InstanceSnapshot,
    VmmRuntime,
    now,
)
from impl.errors import (
    BadRequest,
    Conflict,
    InternalError,
    NexusCrashed,
    NexusUnavailable,
    NotFound,
    SledNoSuchInstance,
    SledUnavailable,
)
from impl.executor.dag import Outcome, SagaResult, StepInfo, StepReport
from impl.executor.saga_executor import SagaExecutor, result_from_log
from impl.ids import IdSource
from impl.nexus.report_path import update_saga_needed
from impl.sagas import registry
from impl.sled_agent.fleet import Fleet
from impl.sled_agent.report import SledVmmState
from model.vocab import ExternalState, InstanceState, VmmState

BACKGROUND_TASKS: dict[str, Callable[[Nexus], Any]] = {
    instance_updater.NAME: instance_updater.activate,
    abandoned_vmm_reaper.NAME: abandoned_vmm_reaper.activate,
    instance_watcher.NAME: instance_watcher.activate,
}
"""Background tasks by name; `v2p_manager` activations are counted but do nothing here."""


class Nexus:
    """A Nexus replica sharing `datastore` with its peers and talking to `fleet`'s sled-agents."""

    def __init__(self, nexus_id: str, datastore: Datastore, fleet: Fleet, ids: IdSource | None = None) -> None:
        self.nexus_id = nexus_id
        self.datastore = datastore
        self.fleet = fleet
        self.ids = ids or IdSource()
        self.executor = SagaExecutor(nexus_id, self, registry())
        self.alive = True
        self.activations: Counter[str] = Counter()
        self.metrics: Counter[str] = Counter()
        # set when there is new work: free-running threads (impl/nexus/free_running.py) wait on it
        self.wake = threading.Event()
        self.crashes = 0

    @property
    def config(self) -> LifecycleConfig:
        return self.datastore.config

    @property
    def revision(self) -> str:
        return self.datastore.revision

    def _check_alive(self) -> None:
        if not self.alive:
            raise NexusUnavailable(f"nexus {self.nexus_id} is down")

    # ------------------------------------------------------------------ plumbing
    def start_saga(self, name: str, params: dict[str, Any]) -> str:
        """Create (log) a saga owned by this replica; it runs when stepped."""
        self._check_alive()
        saga_id = self.ids.new()
        self.executor.create(saga_id, name, params)
        self.wake.set()
        return saga_id

    def activate(self, task: str) -> None:
        """Request a background-task activation (run by `run_background` or the bg thread)."""
        self.activations[task] += 1
        self.wake.set()

    def sled_call(self, sled_id: str, method: str, *args: Any) -> Any:
        """Call a sled-agent (under the fleet lock, so threads see a consistent sled)."""
        with self.fleet.lock:
            return getattr(self.fleet.sled(sled_id), method)(*args)

    # ------------------------------------------------------------------ saga driving
    def step_saga(self, saga_id: str, outcome: Outcome = Outcome.OK) -> StepReport:
        """One step of one saga; a crash outcome crashes this replica and re-raises."""
        self._check_alive()
        try:
            return self.executor.step(saga_id, outcome)
        except NexusCrashed:
            self.crash()
            raise

    def runnable(self) -> list[StepInfo]:
        return self.executor.runnable() if self.alive else []

    def run_sagas(self, max_steps: int = 100_000, only: set[str] | None = None) -> int:
        """Run runnable sagas to quiescence in this thread (outcomes from the fault policy)."""
        self._check_alive()
        try:
            return self.executor.run_until_idle(max_steps, only)
        except NexusCrashed:
            self.crash()
            raise

    def saga_result(self, saga_id: str) -> SagaResult | None:
        return self.executor.result(saga_id) if self.alive else result_from_log(self.datastore, saga_id)

    def crash(self) -> None:
        """The process dies: running sagas, waits and pending activations are lost."""
        self.alive = False
        self.crashes += 1
        self.executor.forget_all()
        self.activations.clear()

    def recover(self) -> list[str]:
        """The process restarts and replays the sagas it owns (Steno recovery)."""
        self.alive = True
        out = self.executor.recover()
        self.wake.set()
        return out

    def adopt_sagas_of(self, other: Nexus) -> list[str]:
        """Take over the unfinished sagas of a crashed replica and recover them here.

        Steno only recovers a saga on its owner; reassignment models an operator (or a later
        Nexus) moving a dead replica's sagas, which the SPEC leaves open.
        """
        self._check_alive()
        if other.alive:
            raise ValueError(f"nexus {other.nexus_id} is alive; it recovers its own sagas")
        self.datastore.saga_reassign(other.nexus_id, self.nexus_id)
        return self.recover()

    # ------------------------------------------------------------------ reads
    def instance_snapshot(self, instance_id: str) -> InstanceSnapshot:
        snap = self.datastore.instance_fetch_all(instance_id)
        if snap is None:
            raise NotFound(f"instance {instance_id} not found")
        return snap

    def instance_view(self, instance_id: str) -> ExternalState:
        """The external state an API `GET` returns (SPEC §3)."""
        return self.datastore.instance_effective_state(instance_id)[0]

    def _effective(self, snap: InstanceSnapshot) -> ExternalState:
        return determine_effective_state(self.revision, snap.instance, snap.active_vmm)

    # ------------------------------------------------------------------ external API
    def instance_create(
        self, name: str, ncpus: int = 2, memory: int = 1024, instance_id: str | None = None
    ) -> tuple[str, str]:
        """Start an `instance-create` saga; returns (instance id, saga id)."""
        self._check_alive()
        iid = instance_id or self.ids.new()
        sid = self.start_saga("instance-create", {"instance_id": iid, "name": name, "ncpus": ncpus, "memory": memory})
        return iid, sid

    def instance_start(self, instance_id: str) -> str | None:
        """`instance_start_allowed` (SPEC §4.2), then an `instance-start` saga (None = no-op)."""
        self._check_alive()
        snap = self.instance_snapshot(instance_id)
        eff = self._effective(snap)
        if eff in (ExternalState.STARTING, ExternalState.RUNNING, ExternalState.REBOOTING, ExternalState.MIGRATING):
            return None
        startable = eff == ExternalState.STOPPED or (self.revision == "rfd486" and eff == ExternalState.FAILED)
        if not startable:
            raise Conflict(f"instance cannot be started in state {eff.name.lower()}")
        if snap.active_vmm is not None and snap.active_vmm.state != VmmState.SAGA_UNWOUND:
            raise InternalError(f"instance is {eff.name.lower()} but has active VMM in {snap.active_vmm.state.name}")
        return self.start_saga("instance-start", {"instance_id": instance_id})

    def _request_state(self, instance_id: str, action: str) -> None:
        """Stop and reboot (SPEC §4.3): `select_runtime_change_action`, then ask the sled."""
        self._check_alive()
        snap = self.instance_snapshot(instance_id)
        eff = self._effective(snap)
        vmm = snap.active_vmm
        if vmm is None:
            if eff == ExternalState.STOPPED:
                if action == "stop":
                    return
                raise BadRequest(f"cannot {action} a stopped instance")
            if eff in (ExternalState.CREATING, ExternalState.FAILED, ExternalState.DESTROYED):
                raise BadRequest(f"cannot {action} an instance in state {eff.name.lower()}")
            raise InternalError("instance is active but not resident on a sled")
        if eff in (ExternalState.REPAIRING, ExternalState.FAILED, ExternalState.DESTROYED):
            raise BadRequest(f"cannot {action} an instance in state {eff.name.lower()}")
        if vmm.state == VmmState.CREATING:
            # Not yet registered: the sled would answer 404 and `mark_vmm_failed` would write a
            # Nexus generation that the sled's own later reports overtake (docs/decisions-impl.md).
            raise Conflict(f"cannot {action} an instance whose VMM is still being created")
        try:
            rep = self.sled_call(vmm.sled_id, "instance_put_state", vmm.id, action)
        except SledNoSuchInstance as e:
            if self.revision == "rfd486":
                self.mark_vmm_failed(vmm.id)
            raise NotFound(str(e)) from e
        except SledUnavailable as e:
            if self.revision == "baseline":
                self.mark_instance_failed(instance_id, snap.instance.runtime)
            raise InternalError(str(e)) from e
        self.notify_instance_updated(rep)

    def instance_stop(self, instance_id: str) -> None:
        self._request_state(instance_id, "stop")

    def instance_reboot(self, instance_id: str) -> None:
        self._request_state(instance_id, "reboot")

    def instance_migrate(self, instance_id: str, dst_sled_id: str) -> str:
        """Migrate preconditions (SPEC §4.4), then an `instance-migrate` saga."""
        self._check_alive()
        if dst_sled_id not in self.fleet.sleds:
            raise BadRequest(f"no sled {dst_sled_id}")
        snap = self.instance_snapshot(instance_id)
        vmm = snap.active_vmm
        if vmm is None or vmm.state != VmmState.RUNNING:
            raise Conflict("instance must be running to migrate")
        if vmm.sled_id == dst_sled_id:
            raise Conflict("instance is already running on the destination sled")
        if snap.instance.migration_id is not None:
            raise Conflict("instance is already migrating")
        inst = snap.instance
        return self.start_saga(
            "instance-migrate",
            {
                "instance_id": instance_id,
                "src_propolis_id": vmm.id,
                "src_sled_id": vmm.sled_id,
                "dst_sled_id": dst_sled_id,
                "ncpus": inst.ncpus,
                "memory": inst.memory,
                "mutants": sorted(self.config.mutants),
            },
        )

    def instance_delete(self, instance_id: str) -> str:
        """Delete (SPEC §4.5): only a Stopped/Failed instance without an active VMM."""
        self._check_alive()
        snap = self.instance_snapshot(instance_id)
        eff = self._effective(snap)
        if snap.instance.active_propolis_id is not None:
            raise BadRequest("instance is running or has not yet fully stopped")
        if eff not in (ExternalState.STOPPED, ExternalState.FAILED):
            raise BadRequest(f"instance cannot be deleted in state {eff.name.lower()}")
        return self.start_saga("instance-delete", {"instance_id": instance_id})

    # ------------------------------------------------------------------ internal API
    def cpapi_instances_put(self, report: SledVmmState) -> str | None:
        """The sled-agent push endpoint: 200 (return) means the DB write is done."""
        self._check_alive()
        return self.notify_instance_updated(report)

    def notify_instance_updated(self, report: SledVmmState) -> str | None:
        """SPEC §4.1: guarded write, `update_saga_needed`, fire-and-forget update saga."""
        res = self.datastore.vmm_and_migration_update_runtime(
            report.propolis_id, report.vmm_state, report.migration_in, report.migration_out
        )
        self.metrics["reports_applied" if res.vmm_updated else "reports_stale"] += 1
        if not update_saga_needed(report, res, self.revision):
            return None
        try:
            return self.start_saga("start-instance-update", {"instance_id": report.instance_id})
        except Exception:  # noqa: BLE001 - SPEC §4.1 step 3: activate the background task
            self.activate(instance_updater.NAME)
            return None

    def mark_instance_failed(self, instance_id: str, prev: InstanceRuntime) -> bool:
        """Baseline `mark_instance_failed` (SPEC §4.10): Failed, active=NULL, gen+1 (CAS).

        Keeps migration ids; releases nothing; ignores the lock (quirk Q1/Q3, #4226).
        """
        new = prev.with_(nexus_state=InstanceState.FAILED, propolis_id=None, gen=prev.gen + 1, time_updated=now())
        return self.datastore.instance_update_runtime(instance_id, new)

    def mark_vmm_failed(self, vmm_id: str) -> str | None:
        """Δ #6455 `mark_vmm_failed`: VMM Failed at gen+1, then an update saga (returned)."""
        vmm = self.datastore.vmm_fetch(vmm_id)
        if vmm is None:
            return None
        self.datastore.vmm_update_runtime(vmm_id, VmmRuntime(VmmState.FAILED, vmm.state_generation + 1, now()))
        return self.start_saga("start-instance-update", {"instance_id": vmm.instance_id})

    # ------------------------------------------------------------------ background tasks
    def run_background(self, task: str) -> Any:
        """Run one background task now (on demand)."""
        self._check_alive()
        self.activations.pop(task, None)
        if task not in BACKGROUND_TASKS:
            return None
        if task == instance_updater.NAME and self.config.has("no-background-updater"):
            self.metrics["bg_suppressed"] += 1
            return []
        self.metrics[f"bg_{task}"] += 1
        return BACKGROUND_TASKS[task](self)
