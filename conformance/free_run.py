"""Free running: several Nexus replicas with threads over one database (issue §6b): the
stress driver of the implementation (a client of `impl/`, not part of it).

`FreeRun` wraps a `Controller` (same datastore, fleet and replicas) and adds:

* per replica, the saga-runner and background-task threads (`impl/nexus/free_running.py`), with a
  random fault policy (crash before/after a node's effect, fail before it);
* a sled thread that advances VMMs and pushes reports to random replicas, dropping,
  duplicating and reordering some of them;
* `random_operations(n)`: random start/stop/reboot/migrate/delete calls on random replicas.

`quiesce()` stops the faults and the threads and then settles step by step, after which the
invariants of `impl.invariants` can be checked.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

from impl.controller import Controller
from impl.errors import ApiError, NexusUnavailable
from impl.executor.dag import Outcome, StepInfo
from impl.nexus.free_running import ReplicaThreads


class FreeRun:
    def __init__(
        self,
        ctl: Controller,
        seed: int = 1,
        crash_p: float = 0.015,
        fail_p: float = 0.02,
        drop_p: float = 0.03,
        dup_p: float = 0.05,
        periods: dict[str, float] | None = None,
        max_vmms_per_instance: int | None = None,
    ) -> None:
        self.ctl = ctl
        # With a bound, start and migrate are not requested for an instance that already has
        # that many VMM records (deleted ones included): a recorded history must fit the
        # validator's slot bound (conformance/validate.py MAX_SLOTS), because deleting an
        # instance touches every migration it had and the VMMs they name.
        self.max_vmms_per_instance = max_vmms_per_instance
        self.rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.crash_p, self.fail_p, self.drop_p, self.dup_p = crash_p, fail_p, drop_p, dup_p
        self.faults_on = True
        self.periods = periods or {"instance_updater": 0.5, "abandoned_vmm_reaper": 1.0, "instance_watcher": 0.7}
        self.stats: Counter[str] = Counter()
        self._stop = threading.Event()
        self._sled_thread: threading.Thread | None = None
        self._replicas: list[ReplicaThreads] = []

    def _at_vmm_bound(self, instance_id: str) -> bool:
        if self.max_vmms_per_instance is None:
            return False
        mine = [v for v in self.ctl.datastore.vmm_list(include_deleted=True)
                if v.instance_id == instance_id]
        return len(mine) >= self.max_vmms_per_instance

    def _rand(self) -> float:
        with self._rng_lock:
            return self.rng.random()

    def _choice(self, seq: list[str]) -> str:
        with self._rng_lock:
            return self.rng.choice(seq)

    def fault_policy(self, info: StepInfo) -> Outcome:
        if not self.faults_on:
            return Outcome.OK
        r = self._rand()
        if r < self.crash_p:
            self.stats["crash"] += 1
            return Outcome.CRASH_AFTER if r < self.crash_p / 2 else Outcome.CRASH_BEFORE
        # A failure on a node's re-execution after a crash would be "effect, then failure",
        # which Steno does not undo (a documented leak); only fail first executions.
        if info.direction == "forward" and not info.replay and r < self.crash_p + self.fail_p:
            self.stats["fail"] += 1
            return Outcome.FAIL_BEFORE
        return Outcome.OK

    # ------------------------------------------------------------------ threads
    def start(self) -> None:
        self._replicas = [ReplicaThreads(nx) for nx in self.ctl.nexuses.values()]
        for r in self._replicas:
            r.start(self.periods, self.fault_policy)
        self._stop.clear()
        self._sled_thread = threading.Thread(target=self._sleds, name="sleds", daemon=True)
        self._sled_thread.start()

    def _sleds(self) -> None:
        fleet = self.ctl.fleet
        nexus_ids = list(self.ctl.nexuses)
        while not self._stop.is_set():
            busy = False
            movable = fleet.advanceable()
            if movable:
                busy = True
                vid = self._choice(movable)
                fleet.advance(vid, migration_ok=self._rand() > 0.2)
            pending = fleet.pending()
            if pending:
                busy = True
                with self._rng_lock:
                    p = self.rng.choice(pending[:4])  # mild reordering
                r = self._rand() if self.faults_on else 1.0
                mode = "drop" if r < self.drop_p else "duplicate" if r < self.drop_p + self.dup_p else "deliver"
                self.stats[f"report_{mode}"] += 1
                nx = self.ctl.nexuses[self._choice(nexus_ids)]
                fleet.deliver(p.report_id, nx.cpapi_instances_put, mode)
            if not busy:
                time.sleep(0.005)

    def random_operations(self, instance_ids: list[str], n_ops: int, pause: float = 0.002) -> None:
        """Issue `n_ops` random external requests; refusals and down replicas are counted."""
        sleds = list(self.ctl.fleet.sleds)
        ops = ["start", "start", "stop", "reboot", "migrate", "delete"]
        crash_at = {n_ops // 3: 0, (2 * n_ops) // 3: 1}  # also crash each replica once on purpose
        replicas = list(self.ctl.nexuses.values())
        for k in range(n_ops):
            if k in crash_at and crash_at[k] < len(replicas):
                replicas[crash_at[k]].crash()  # its runner thread restarts and recovers it
                self.stats["forced_crash"] += 1
            iid = self._choice(instance_ids)
            op = self._choice(ops)
            if op in ("start", "migrate") and self._at_vmm_bound(iid):
                self.stats["op_skipped_vmm_bound"] += 1
                continue
            nx = self.ctl.nexuses[self._choice(list(self.ctl.nexuses))]
            try:
                if op == "start":
                    nx.instance_start(iid)
                elif op == "stop":
                    nx.instance_stop(iid)
                elif op == "reboot":
                    nx.instance_reboot(iid)
                elif op == "migrate":
                    nx.instance_migrate(iid, self._choice(sleds))
                else:
                    nx.instance_delete(iid)
                self.stats[f"op_{op}_ok"] += 1
            except NexusUnavailable:
                self.stats["op_nexus_down"] += 1
            except ApiError as e:
                self.stats[f"op_{op}_{type(e).__name__}"] += 1
            except Exception as e:  # noqa: BLE001 - e.g. a sled error surfaced to the API caller
                self.stats[f"op_{op}_{type(e).__name__}"] += 1
            time.sleep(pause)

    def quiesce(self, drain_seconds: float = 2.0) -> int:
        """Switch faults off, let the threads drain, stop them, then settle step by step."""
        self.faults_on = False
        time.sleep(drain_seconds)
        self._stop.set()
        if self._sled_thread is not None:
            self._sled_thread.join(timeout=30)
        for r in self._replicas:
            r.stop()
        return self.ctl.settle(max_rounds=1000)
