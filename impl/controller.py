"""Step-by-step controller: the caller makes every nondeterministic choice.

A conformance suite replays model traces through this API; every method performs one
deterministic transition and returns what it did. Nothing runs in the background.

Set-up
    `Controller(db_url="sqlite://", revision="baseline", mutants=(), nexus_ids=("nexus-0",
    "nexus-1"), sled_ids=("sled-0", "sled-1", "sled-2"), seed=0)`. All replicas share one
    `Datastore` and one simulated `Fleet`. With `seed` the generated UUIDs are reproducible.

External API (SPEC §4.2–§4.5) — each takes `nexus=` (default: the first replica)
    `create_instance(name, ncpus, memory)` -> `(instance_id, saga_id)`;
    `start_instance(iid)` -> saga id or None (nothing to do); `stop_instance(iid)`;
    `reboot_instance(iid)`; `migrate_instance(iid, dst_sled)` -> saga id;
    `delete_instance(iid)` -> saga id. A refused request raises `Conflict`, `BadRequest`,
    `NotFound` or `InternalError` (see `impl.errors`) and changes nothing.

Sagas — which saga takes its next node, and how the node ends
    `runnable()` lists `StepInfo(saga_id, saga_name, owner, node_index, node_name,
    direction)` for every live replica; `step(saga_id, outcome)` runs exactly that one node (or
    undo) with `Outcome.OK`, `CRASH_BEFORE`, `CRASH_AFTER`, `FAIL_BEFORE` or `FAIL_AFTER`. A
    crash outcome crashes the owning replica (the step report says `event="crashed"`); it stays
    down, with its sagas frozen, until `recover_nexus(nexus_id)` replays its log. A saga
    waiting for a child (start-instance-update node 3) becomes runnable when the child ends.
    `run_sagas()` steps everything with OK until nothing is runnable; `saga_result(id)`.

Sled-agents and reports (SPEC §2.1, §4.1)
    World events: `vmm_advance(vmm_id, migration_ok=None)` (one Propolis transition toward
    the requested state, or through a migration), `vmm_fail(vmm_id)`, `vmm_destroy(vmm_id)`
    (Propolis exits on its own), `vmm_vanish(vmm_id)`,
    `set_sled_unhealthy(sled_id, flag)`; `advanceable_vmms()` lists VMMs with a next step.
    Every change queues a report: `pending_reports()` lists them (`report_id`, `report`);
    `deliver_report(report_id, nexus=, mode="deliver"|"duplicate"|"drop")` pushes one (any
    order: reordering is choosing a later id first). A push to a crashed replica fails and
    the report stays queued.

Background tasks (SPEC §4.7–§4.9)
    `run_background(task, nexus=)` with task `instance_updater`, `abandoned_vmm_reaper` or
    `instance_watcher`; `pending_activations()` shows activation requests sagas made.

Crashes
    `crash_nexus(nexus_id)` at any time between steps; `recover_nexus(nexus_id)` -> ids of
    the sagas it resumed; `recover_nexus(nexus_id, on=other)` lets `other` adopt them.

Observation
    `external_state(iid)` (SPEC §3), `snapshot(iid)`, `violations()` (record invariants) and
    `quiescent_violations()` (the stress-test invariants, meaningful once settled);
    `settle()` drives everything with default choices (deliver every report, run every saga
    OK, advance every VMM, run the background tasks) until nothing changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from impl.config import LifecycleConfig
from impl.datastore import Datastore
from impl.datastore.records import InstanceSnapshot
from impl.errors import NexusCrashed
from impl.executor.dag import Outcome, SagaResult, StepInfo, StepReport
from impl.ids import IdSource
from impl.invariants import quiescent_violations, record_violations
from impl.nexus.nexus import Nexus
from impl.sled_agent.fleet import Fleet
from impl.sled_agent.report import PendingReport, SledVmmState
from model.vocab import ExternalState

BACKGROUND = ("instance_watcher", "instance_updater", "abandoned_vmm_reaper")


class Controller:
    """Deterministic, caller-driven execution of several Nexus replicas over one database."""

    def __init__(
        self,
        db_url: str = "sqlite://",
        revision: str = "baseline",
        mutants: Iterable[str] = (),
        nexus_ids: Iterable[str] = ("nexus-0", "nexus-1"),
        sled_ids: Iterable[str] = ("sled-0", "sled-1", "sled-2"),
        seed: int | None = 0,
        pg_schema: str | None = None,
        datastore: Datastore | None = None,
    ) -> None:
        config = LifecycleConfig(revision, frozenset(mutants))
        self.datastore = datastore or Datastore(db_url, config, pg_schema=pg_schema)
        sleds = list(sled_ids)
        self.fleet = Fleet(sleds)
        for sid in sleds:
            self.datastore.sled_upsert(sid, self.fleet.sled(sid).ip)
        self.ids = IdSource(seed)
        self.nexuses: dict[str, Nexus] = {
            nid: Nexus(nid, self.datastore, self.fleet, self.ids) for nid in nexus_ids
        }
        self.default_nexus = next(iter(self.nexuses))

    def nexus(self, nexus_id: str | None = None) -> Nexus:
        return self.nexuses[nexus_id or self.default_nexus]

    # ------------------------------------------------------------------ external API
    def create_instance(
        self, name: str, ncpus: int = 2, memory: int = 1024, nexus: str | None = None
    ) -> tuple[str, str]:
        return self.nexus(nexus).instance_create(name, ncpus, memory)

    def start_instance(self, instance_id: str, nexus: str | None = None) -> str | None:
        return self.nexus(nexus).instance_start(instance_id)

    def stop_instance(self, instance_id: str, nexus: str | None = None) -> None:
        self.nexus(nexus).instance_stop(instance_id)

    def reboot_instance(self, instance_id: str, nexus: str | None = None) -> None:
        self.nexus(nexus).instance_reboot(instance_id)

    def migrate_instance(self, instance_id: str, dst_sled: str, nexus: str | None = None) -> str:
        return self.nexus(nexus).instance_migrate(instance_id, dst_sled)

    def delete_instance(self, instance_id: str, nexus: str | None = None) -> str:
        return self.nexus(nexus).instance_delete(instance_id)

    # ------------------------------------------------------------------ sagas
    def _owner(self, saga_id: str) -> Nexus:
        row = self.datastore.saga_fetch(saga_id)
        if row is None:
            raise KeyError(f"no saga {saga_id}")
        return self.nexuses[row.owner]

    def runnable(self) -> list[StepInfo]:
        return [s for n in self.nexuses.values() for s in n.runnable()]

    def step(self, saga_id: str, outcome: Outcome | str = Outcome.OK) -> StepReport:
        """Run one node of `saga_id` with `outcome`; a crash outcome crashes the owner."""
        nx = self._owner(saga_id)
        info = next((s for s in nx.runnable() if s.saga_id == saga_id), None)
        try:
            return nx.step_saga(saga_id, Outcome(outcome))
        except NexusCrashed as e:
            name = info.node_name if info else "?"
            direction = info.direction if info else "?"
            return StepReport(saga_id, name, direction, "crashed", "running", str(e))

    def run_sagas(self, max_steps: int = 100_000) -> int:
        """Step every runnable saga with OK until none is runnable; returns the step count."""
        steps = 0
        while steps < max_steps:
            todo = self.runnable()
            if not todo:
                return steps
            self.step(todo[0].saga_id)
            steps += 1
        raise RuntimeError("run_sagas: step budget exhausted")

    def run_saga(self, saga_id: str) -> SagaResult | None:
        """Run everything runnable (the saga and any child it waits for) until it finishes."""
        self.run_sagas()
        return self.saga_result(saga_id)

    def saga_result(self, saga_id: str) -> SagaResult | None:
        return self._owner(saga_id).saga_result(saga_id)

    # ------------------------------------------------------------------ sled world
    def vmm_advance(self, vmm_id: str, migration_ok: bool | None = None) -> SledVmmState | None:
        return self.fleet.advance(vmm_id, migration_ok)

    def vmm_fail(self, vmm_id: str) -> SledVmmState | None:
        return self.fleet.fail(vmm_id)

    def vmm_destroy(self, vmm_id: str) -> SledVmmState | None:
        return self.fleet.destroy(vmm_id)

    def vmm_vanish(self, vmm_id: str) -> bool:
        return self.fleet.vanish(vmm_id)

    def set_sled_unhealthy(self, sled_id: str, unhealthy: bool = True) -> None:
        self.fleet.sled(sled_id).unhealthy = unhealthy

    def advanceable_vmms(self) -> list[str]:
        return self.fleet.advanceable()

    # ------------------------------------------------------------------ reports
    def pending_reports(self) -> list[PendingReport]:
        return self.fleet.pending()

    def deliver_report(self, report_id: int, nexus: str | None = None, mode: str = "deliver") -> bool:
        nx = self.nexus(nexus)
        return self.fleet.deliver(report_id, nx.cpapi_instances_put, mode)

    def deliver_all_reports(self, nexus: str | None = None) -> int:
        n = 0
        for p in self.pending_reports():
            self.deliver_report(p.report_id, nexus)
            n += 1
        return n

    # ------------------------------------------------------------------ background tasks
    def run_background(self, task: str, nexus: str | None = None) -> Any:
        return self.nexus(nexus).run_background(task)

    def pending_activations(self) -> dict[str, Counter[str]]:
        return {nid: Counter(n.activations) for nid, n in self.nexuses.items()}

    # ------------------------------------------------------------------ crashes
    def crash_nexus(self, nexus_id: str) -> None:
        self.nexuses[nexus_id].crash()

    def recover_nexus(self, nexus_id: str, on: str | None = None) -> list[str]:
        """Restart `nexus_id` and replay its sagas; with `on=`, another replica adopts them
        instead (and `nexus_id` comes back with nothing to recover)."""
        if on is None or on == nexus_id:
            return self.nexuses[nexus_id].recover()
        adopted = self.nexuses[on].adopt_sagas_of(self.nexuses[nexus_id])
        self.nexuses[nexus_id].recover()
        return adopted

    # ------------------------------------------------------------------ observation
    def external_state(self, instance_id: str) -> ExternalState:
        return self.datastore.instance_effective_state(instance_id)[0]

    def snapshot(self, instance_id: str) -> InstanceSnapshot | None:
        return self.datastore.instance_fetch_all(instance_id, include_deleted=True)

    def violations(self) -> list[str]:
        return record_violations(self.datastore)

    def sled_vmm_ids(self) -> set[str]:
        """The VMMs the simulated sled-agents still run (they answer 404 for the others)."""
        return {v.vmm_id for v in self.fleet.live_vmms()}

    def quiescent_violations(self) -> list[str]:
        """`impl.invariants.quiescent_violations`, told which VMMs the sleds still run (a
        baseline VMM row that stands for no VMM needs no reservation: SPEC §7 G3, §4.9)."""
        return quiescent_violations(self.datastore, self.sled_vmm_ids())

    def fingerprint(self, exclude: frozenset[str] = frozenset()) -> tuple[object, ...]:
        """The observable state, ignoring lock generations and the saga log, and the records
        of the instances in `exclude`."""
        ds = self.datastore
        every = ds.vmm_list(include_deleted=True)
        vmms = [v for v in every if v.instance_id not in exclude]
        left_out = {v.id for v in every} - {v.id for v in vmms}
        return (
            tuple(
                (i.id, i.state, i.state_generation, i.active_propolis_id, i.target_propolis_id, i.migration_id, i.updater_id)
                for i in ds.instance_list(include_deleted=True)
                if i.id not in exclude
            ),
            tuple(vmms),
            tuple(sorted((k, v) for k, v in ds.sled_reservations().items()
                         if k not in left_out)),
            tuple(sorted((k, v) for k, v in ds.provisioning_resources().items()
                         if k not in exclude)),
            tuple(sorted(ds.provisioning_counters().items())),
        )

    def stuck_instances(self) -> frozenset[str]:
        """Instances with a saga whose node panicked (finding F4): such a saga never
        finishes, and the background tasks keep acting on the instance (the rfd486 watcher
        marks a vanished VMM Failed again every pass), so it never looks settled."""
        out = set()
        for nx in self.nexuses.values():
            ex = nx.executor
            for sid in ex.panicked:
                run = ex._runs.get(sid)
                if run is not None and "instance_id" in run.params:
                    out.add(str(run.params["instance_id"]))
        return frozenset(out)

    def settle(self, advance_vmms: bool = True, max_rounds: int = 200) -> int:
        """Default choices until nothing changes; returns the rounds used.

        Quiescence means: no runnable saga, no pending report, no VMM to advance, and a full
        round of background tasks (plus the sagas they start) left the state unchanged. The
        last condition tolerates the harmless no-op update sagas of SPEC §4.7, and ignores the
        records of instances stuck behind a panicked saga (`stuck_instances`).
        """
        prev: tuple[object, ...] | None = None
        for rounds in range(max_rounds):
            # a crashed replica restarts (a saga whose code panics crashes it on purpose)
            for nid, nx in self.nexuses.items():
                if not nx.alive:
                    self.recover_nexus(nid)
            progress = self.run_sagas() > 0
            if self._any_down():
                continue  # a panic crashed a replica: restart it first
            if self.pending_reports():
                self.deliver_all_reports()
                progress = True
            if advance_vmms:
                for vid in self.advanceable_vmms():
                    self.vmm_advance(vid)
                    progress = True
            if progress:
                continue
            for task in BACKGROUND:
                if self._any_down():
                    break
                self.run_background(task)
            self.run_sagas()
            if self._any_down():
                continue  # restart the replica a panic crashed before judging quiescence
            fp = self.fingerprint(self.stuck_instances())
            idle = not self.runnable() and not self.pending_reports()
            if idle and (not advance_vmms or not self.advanceable_vmms()) and fp == prev:
                return rounds
            prev = fp
        raise RuntimeError(
            f"settle: no quiescence after {max_rounds} rounds (runnable sagas: "
            f"{[(i.saga_name, i.node_name) for i in self.runnable()][:5]}, pending reports: "
            f"{len(self.pending_reports())}, VMMs to advance: {len(self.advanceable_vmms())}, "
            f"stuck instances: {sorted(self.stuck_instances())})")

    def _any_down(self) -> bool:
        return any(not nx.alive for nx in self.nexuses.values())

    def close(self, drop_schema: bool = False) -> None:
        self.datastore.dispose(drop_schema=drop_schema)
