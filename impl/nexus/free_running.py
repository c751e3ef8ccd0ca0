"""A replica running on its own: its saga-runner and background-task threads (free running).

Trace replay and the controller drive a `Nexus` step by step from one thread. Free running
(conformance/free_run.py, the stress runs) instead gives each replica two threads, the way a real
Nexus process runs:

* the saga runner steps every runnable saga, with outcomes from a fault policy; a crash
  outcome crashes the replica, and the runner restarts it after `restart_delay` seconds and
  recovers its sagas from the log (Steno recovery);
* the background-task thread activates each task when its period is due or when an
  activation was requested (`Nexus.activate`).

Both wait on the replica's wake event, which new sagas, recoveries and activation requests
set.
"""

from __future__ import annotations

import threading
import time

from impl.background import abandoned_vmm_reaper, instance_updater, instance_watcher
from impl.errors import NexusCrashed
from impl.executor.dag import Outcome
from impl.executor.saga_executor import FaultPolicy
from impl.nexus.nexus import BACKGROUND_TASKS, Nexus

DEFAULT_PERIODS = {instance_updater.NAME: 30.0, abandoned_vmm_reaper.NAME: 60.0,
                   instance_watcher.NAME: 30.0}
"""Seconds between a task's periodic activations, when the caller gives none."""


class ReplicaThreads:
    """The two threads of one free-running replica."""

    def __init__(self, nexus: Nexus, restart_delay: float = 0.01) -> None:
        self.nexus = nexus
        self.restart_delay = restart_delay
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, periods: dict[str, float] | None = None,
              fault_policy: FaultPolicy | None = None) -> None:
        nx = self.nexus
        nx.executor.fault_policy = fault_policy
        periods = dict(DEFAULT_PERIODS if periods is None else periods)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._runner, name=f"{nx.nexus_id}-sagas", daemon=True),
            threading.Thread(target=self._background, args=(periods,),
                             name=f"{nx.nexus_id}-bg", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self.nexus.wake.set()
        for t in self._threads:
            t.join(timeout=30)
        self._threads = []
        self.nexus.executor.fault_policy = None

    def _runner(self) -> None:
        nx = self.nexus
        while not self._stop.is_set():
            if not nx.alive:
                time.sleep(self.restart_delay)
                nx.recover()
                continue
            todo = nx.executor.runnable()
            if not todo:
                nx.wake.wait(0.02)
                nx.wake.clear()
                continue
            for info in todo:
                if self._stop.is_set():
                    break
                pol = nx.executor.fault_policy
                outcome = pol(info) if pol is not None else Outcome.OK
                try:
                    nx.executor.step(info.saga_id, outcome)
                except NexusCrashed:
                    nx.crash()
                    break
                except (KeyError, ValueError):
                    continue  # the saga finished or moved meanwhile
                except Exception:  # noqa: BLE001 - e.g. the saga log write failed
                    # The in-memory state may now disagree with the log: restart from the log.
                    nx.metrics["runner_error"] += 1
                    nx.crash()
                    break

    def _background(self, periods: dict[str, float]) -> None:
        nx = self.nexus
        last = {name: time.monotonic() for name in periods}
        while not self._stop.is_set():
            nx.wake.wait(0.05)
            if not nx.alive:
                continue
            t = time.monotonic()
            for name in BACKGROUND_TASKS:
                due = name in periods and t - last[name] >= periods[name]
                if due or nx.activations.get(name):
                    last[name] = t
                    try:
                        nx.run_background(name)
                    except Exception:  # noqa: BLE001 - a failed activation is retried next period
                        nx.metrics[f"bg_error_{name}"] += 1
