"""Free runs driven by generated traces: a trace's requests and faults, the threads' interleaving.

Lockstep replay (`replay.py`) drives the implementation one step at a time from one thread,
so it never runs the code a real Nexus process runs its sagas and background tasks with
(`impl/nexus/free_running.py`). A *trace-driven free run* takes a generated trace and runs
what it asks for on the free-running implementation (`free_run.py`: two replicas, each with
its saga-runner and background-task threads, and a sled thread):

* the trace's external requests (`user.instance_*`), in order, each issued once the
  implementation has gone quiet, on the two replicas in turn;
* its saga faults: every saga node the trace fails or crashes becomes a fault that fires the
  first time a runner thread reaches that node (`fail` -> FAIL_BEFORE on the group's first
  node, on a first execution only; `crash` -> CRASH_AFTER on the group's last node;
  `ambiguous` -> FAIL_AFTER; `undo-crash` -> CRASH_AFTER on an undo of the group). A crashed
  replica is restarted by its own runner thread, which replays its saga log;
* its replica crashes (`nexus.crash_and_recover`): the replica is crashed between requests.

The instance is created and brought to Stopped before the threads start, so the trace's
create-saga steps are not scripted. The threads choose the interleaving, so the run does not
follow the trace step by step and is not compared with it state by state. It is judged as
the stress run is: its recorded history must be explained by the model step by step
(`validate.py`), and once settled its records must satisfy the quiescent invariants
(`impl.invariants.quiescent_violations`). A fault the run never reached is counted, not
failed: the threads may take another path than the trace.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from impl.controller import Controller
from impl.errors import ApiError, NexusUnavailable
from impl.executor.dag import Outcome, StepInfo
from impl.history import HistoryRecorder
from impl.nexus.nexus import Nexus
from model.actions import model_for
from model.trace import LoadedTrace

from .free_run import FreeRun
from .history_run import FAST_PERIODS, VMM_BOUND
from .impl_fixtures import Backend, controller, stopped_instance
from .nodes import GROUPS

REQUESTS = ("start", "stop", "reboot", "migrate", "delete")


@dataclass
class ScriptedFault:
    """Fire `outcome` the first time a runner reaches one of `nodes` of saga `saga` in
    `direction` (a FAIL_BEFORE only on a node's first execution)."""

    saga: str
    nodes: tuple[str, ...]
    direction: str
    outcome: Outcome
    fired: bool = False

    def matches(self, info: StepInfo) -> bool:
        if self.fired or info.saga_name != self.saga or info.node_name not in self.nodes:
            return False
        if info.direction != self.direction:
            return False
        return not (self.outcome == Outcome.FAIL_BEFORE and info.replay)


@dataclass
class Script:
    """What a trace asks of a free run."""

    requests: list[str] = field(default_factory=list)  # "start", "stop", ... in order
    faults: list[ScriptedFault] = field(default_factory=list)
    crashes: dict[int, list[int]] = field(default_factory=dict)  # before request i: replicas


def script_of(trace: LoadedTrace) -> Script:
    """The requests, saga faults and replica crashes of `trace` (its seed prefix included)."""
    model = model_for(trace.cfg)
    out = Script()
    for label in trace.labels:
        a = model.actions[model.action_index(label)]
        kind, _, node = a.name.partition(".")
        if kind == "user":
            op = node.removeprefix("instance_")
            if op in REQUESTS:
                out.requests.append(op)
            continue
        if a.name == "nexus.crash_and_recover":
            out.crashes.setdefault(len(out.requests), []).append(int(a.arg("nexus") or 0))
            continue
        undo = node.endswith(".undo")
        node = node.removesuffix(".undo")
        group = GROUPS.get(kind, {}).get(node)
        if group is None or kind == "instance-create":
            continue  # not a saga node, or the create saga (run before the threads start)
        outcome = a.arg("outcome")
        if undo and outcome == "undo-crash":
            out.faults.append(ScriptedFault(kind, group, "undo", Outcome.CRASH_AFTER))
        elif not undo and outcome == "fail":
            out.faults.append(ScriptedFault(kind, group[:1], "forward", Outcome.FAIL_BEFORE))
        elif not undo and outcome == "crash":
            out.faults.append(ScriptedFault(kind, group[-1:], "forward", Outcome.CRASH_AFTER))
        elif not undo and outcome == "ambiguous":
            out.faults.append(ScriptedFault(kind, group[-1:], "forward", Outcome.FAIL_AFTER))
    return out


class ScriptedRun(FreeRun):
    """A free run whose saga faults are a trace's, and no random ones."""

    def __init__(self, ctl: Controller, faults: list[ScriptedFault], seed: int = 0,
                 periods: dict[str, float] | None = None,
                 max_vmms_per_instance: int | None = None) -> None:
        super().__init__(ctl, seed, crash_p=0.0, fail_p=0.0, drop_p=0.0, dup_p=0.0,
                         periods=periods, max_vmms_per_instance=max_vmms_per_instance)
        self.faults = faults

    def fault_policy(self, info: StepInfo) -> Outcome:
        if not self.faults_on:
            return Outcome.OK
        with self._rng_lock:  # runner threads of both replicas ask at once
            for f in self.faults:
                if f.matches(info):
                    f.fired = True
                    self.stats[f"fault_{f.outcome.name.lower()}"] += 1
                    return f.outcome
        return Outcome.OK

    def quiet(self, timeout: float) -> bool:
        """Wait until nothing is runnable, no report is pending and no VMM can advance, twice
        in a row; False if that did not happen within `timeout` seconds."""
        ctl, calm, end = self.ctl, 0, time.monotonic() + timeout
        while time.monotonic() < end:
            busy = (ctl.runnable() or ctl.fleet.pending() or ctl.fleet.advanceable()
                    or any(not nx.alive for nx in ctl.nexuses.values()))
            calm = 0 if busy else calm + 1
            if calm >= 2:
                return True
            time.sleep(0.01)
        return False


@dataclass
class TraceRunResult:
    trace: str
    requests: int = 0
    refused: int = 0
    faults: int = 0
    fired: int = 0
    crashes: int = 0
    events: int = 0
    steps: int = 0
    seconds: float = 0.0
    failure: str = ""  # why the run failed: an unexplained event or a violated invariant
    kept: str = ""  # the history file, kept when validation fails

    @property
    def ok(self) -> bool:
        return not self.failure

    def to_json(self) -> dict[str, object]:
        return {"trace": self.trace, "requests": self.requests, "refused": self.refused,
                "faults": self.faults, "faults_fired": self.fired,
                "replica_crashes": self.crashes, "events": self.events, "steps": self.steps,
                "seconds": round(self.seconds, 2), "failure": self.failure or None,
                "history": self.kept or None}


def free_run_trace(trace: LoadedTrace, path: str, backend: Backend, seed: int = 0,
                   quiet_timeout: float = 3.0, mutants: tuple[str, ...] = ()) -> TraceRunResult:
    """Run `trace`'s script on the free-running implementation (with `mutants` switched on in
    the implementation only), record its history, settle, and judge it (module docstring).
    On failure the history file is kept and named, for `lifecycle validate FILE`."""
    from .history_file import HistoryError, load
    from .replay_history import keep
    from .validate import validate

    script = script_of(trace)
    res = TraceRunResult(path, faults=len(script.faults))
    revision = trace.cfg.revision
    tmp = Path(tempfile.mkdtemp(prefix="lc_trace_free_run_"))
    file = tmp / (Path(path).name.removesuffix(".itf.json") + ".free-run.history.jsonl")
    t0 = time.perf_counter()
    ctl = controller(backend, revision, mutants, nexus_ids=("nexus-0", "nexus-1"),
                     sled_ids=("sled-0", "sled-1", "sled-2"), seed=seed)
    rec = HistoryRecorder(file).attach(ctl.datastore)
    try:
        iid = stopped_instance(ctl, "inst")
        run = ScriptedRun(ctl, script.faults, seed, FAST_PERIODS, VMM_BOUND)
        replicas = list(ctl.nexuses.values())
        run.start()
        try:
            for i, op in enumerate(script.requests + [""]):
                run.quiet(quiet_timeout)
                for n in script.crashes.get(i, []):
                    replicas[n % len(replicas)].crash()  # its runner restarts it
                    res.crashes += 1
                if not op:
                    break
                if op in ("start", "migrate") and run._at_vmm_bound(iid):
                    res.refused += 1
                    continue
                res.requests += 1
                if not _request(ctl, replicas[i % len(replicas)], iid, op):
                    res.refused += 1
        finally:
            try:
                run.quiesce(drain_seconds=0.2)
            except RuntimeError as e:  # a defect can keep the run from settling
                res.failure = f"the run does not settle: {e}"
        res.fired = sum(1 for f in script.faults if f.fired)
        bad = ctl.quiescent_violations()
        res.events = rec.events
        verdict = validate(load(file), revision)
        res.steps = verdict.steps
        if verdict.failure is not None:  # the first unexplained event comes first
            res.failure = verdict.failure.summary()
        elif not res.failure and bad:
            res.failure = "after settling: " + "; ".join(bad)
    except HistoryError as e:
        res.failure = f"the recorded history cannot be read: {e}"
    finally:
        rec.detach(ctl.datastore)
        ctl.close(drop_schema=True)
        res.seconds = time.perf_counter() - t0
        if res.failure and file.exists():
            res.kept = str(keep(file))
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def _request(ctl: Controller, nx: Nexus, iid: str, op: str) -> bool:
    """Issue one request; False when it was refused (an API error or a down replica)."""
    calls: dict[str, Callable[[], object]] = {
        "start": lambda: nx.instance_start(iid),
        "stop": lambda: nx.instance_stop(iid),
        "reboot": lambda: nx.instance_reboot(iid),
        "migrate": lambda: nx.instance_migrate(iid, _destination(ctl, iid)),
        "delete": lambda: nx.instance_delete(iid),
    }
    try:
        calls[op]()
    except (ApiError, NexusUnavailable):
        return False
    return True


def _destination(ctl: Controller, iid: str) -> str:
    """A sled other than the active VMM's (a migration to its own sled is refused)."""
    snap = ctl.datastore.instance_fetch_all(iid)
    here = snap.active_vmm.sled_id if snap is not None and snap.active_vmm is not None else ""
    return next(s for s in ctl.fleet.sleds if s != here)


def pick(traces: list[tuple[str, LoadedTrace]], n: int) -> list[tuple[str, LoadedTrace]]:
    """Up to `n` traces for free runs: those whose scripts have the most distinct faults
    first (ties: suite order), so that a few runs reach many fault points."""
    keyed = []
    for idx, (p, tr) in enumerate(traces):
        s = script_of(tr)
        distinct = {(f.saga, f.nodes, f.direction, f.outcome) for f in s.faults}
        keyed.append((-len(distinct), -len(s.crashes), idx, p, tr))
    keyed.sort(key=lambda k: k[:3])
    return [(p, tr) for *_, p, tr in keyed[:n]]


def free_run_traces(traces: list[tuple[str, LoadedTrace]], n: int, backend: Callable[[], Backend],
                    seed: int = 0) -> list[TraceRunResult]:
    """Trace-driven free runs of up to `n` of `traces` (`pick`), each on a fresh database."""
    return [free_run_trace(tr, p, backend(), seed) for p, tr in pick(traces, n)]
