"""The per-Nexus saga executor: durable log, step-by-step execution, unwinding, recovery.

Semantics (SPEC "Saga semantics", §5 "Crash and unwind cases"):

* Before an action runs, `started` is logged; on completion `succeeded` (with the output) or
  `failed`. Recorded outputs are reused on replay.
* After a crash, `recover()` rebuilds every unfinished saga this replica owns from the log: a
  node `started` but not finished is re-executed; a node that `failed` puts the saga into
  unwinding without running its own undo; an undo in progress runs again.
* Unwinding runs the undo of every *succeeded* node with an undo, in reverse order. An undo that
  fails leaves the saga `stuck`.
* `step()` runs exactly one action or undo with a chosen `Outcome`; `run_until_idle()` drives
  all runnable sagas with `Outcome.OK` (or with the outcomes a fault policy picks).

The executor is thread-safe (one step at a time per replica) so free-running threads can use it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from impl.errors import InjectedFailure, NexusCrashed, NexusPanic
from impl.executor.context import SagaContext
from impl.executor.dag import AwaitSaga, Node, Outcome, SagaResult, StepInfo, StepReport

if TYPE_CHECKING:
    from impl.datastore import Datastore
    from impl.nexus.nexus import Nexus

DagBuilder = Callable[[dict[str, Any]], list[Node]]
FaultPolicy = Callable[[StepInfo], Outcome]


@dataclass
class _Run:
    saga_id: str
    name: str
    params: dict[str, Any]
    nodes: list[Node]
    outputs: dict[str, Any] = field(default_factory=dict)
    status: dict[int, str] = field(default_factory=dict)  # node index -> last event
    mode: str = "running"  # running | unwinding
    waiting: AwaitSaga | None = None
    failed_node: str | None = None
    error_kind: str | None = None
    error_message: str | None = None


class SagaExecutor:
    """Runs the sagas owned by one Nexus replica (`owner`)."""

    def __init__(self, owner: str, nexus: Nexus, registry: dict[str, DagBuilder]) -> None:
        self.owner = owner
        self.nexus = nexus
        self.registry = registry
        self._runs: dict[str, _Run] = {}
        self._results: dict[str, SagaResult] = {}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.fault_policy: FaultPolicy | None = None
        # Sagas whose node panicked here. Nexus aborts on panic and every recovery
        # re-executes the node and panics again; the process supervisor's memory of the
        # crash loop survives `forget_all`, and `runnable()` stops offering these sagas so
        # that drivers do not spin (the saga stays stuck, as in the model). `step()` still
        # runs them when asked by name.
        self.panicked: set[str] = set()

    @property
    def ds(self) -> Datastore:
        return self.nexus.datastore

    # ----------------------------------------------------------------- creation / lookup
    def create(self, saga_id: str, name: str, params: dict[str, Any]) -> str:
        """Log a new saga owned by this replica and make it runnable (nothing runs yet)."""
        nodes = self.registry[name](params)
        with self.lock:
            self.ds.saga_create(saga_id, name, params, self.owner)
            self._runs[saga_id] = _Run(saga_id, name, params, nodes)
            self.changed.notify_all()
        return saga_id

    def result(self, saga_id: str) -> SagaResult | None:
        """The result of a finished saga (from memory, else rebuilt from the log)."""
        with self.lock:
            if saga_id in self._results:
                return self._results[saga_id]
        return result_from_log(self.ds, saga_id)

    # ----------------------------------------------------------------- stepping
    def _next(self, run: _Run) -> tuple[int, str] | None:
        if run.mode == "running":
            for idx in range(len(run.nodes)):
                if run.status.get(idx) != "succeeded":
                    if run.waiting is not None:
                        if run.waiting.child_id in self._runs:
                            return None  # the child is still running here: no need to ask the log
                        child = self.result(run.waiting.child_id)
                        return (idx, "finish") if child is not None else None
                    return idx, "forward"
            return None
        for idx in range(len(run.nodes) - 1, -1, -1):
            if run.nodes[idx].undo is not None and run.status.get(idx) in ("succeeded", "undo_started"):
                return idx, "undo"
        return None

    def runnable(self) -> list[StepInfo]:
        """Every saga that can take a step now, in creation order."""
        with self.lock:
            out = []
            for run in self._runs.values():
                if run.saga_id in self.panicked:
                    continue
                nxt = self._next(run)
                if nxt is not None:
                    replay = run.status.get(nxt[0]) in ("started", "undo_started") and run.waiting is None
                    out.append(
                        StepInfo(run.saga_id, run.name, self.owner, nxt[0], run.nodes[nxt[0]].name, nxt[1], replay)
                    )
            return out

    def step(self, saga_id: str, outcome: Outcome = Outcome.OK) -> StepReport:
        """Execute one node action (or undo) of `saga_id` with the given outcome.

        Raises `NexusCrashed` for the crash outcomes; the caller (Nexus) then drops this
        replica's memory via `forget_all()`.
        """
        with self.lock:
            run = self._runs[saga_id]
            nxt = self._next(run)
            if nxt is None:
                raise ValueError(f"saga {saga_id} has no runnable step")
            idx, direction = nxt
            node = run.nodes[idx]
            ctx = SagaContext(run.saga_id, run.name, run.params, run.outputs, self.nexus)
            if direction == "undo":
                rep = self._step_undo(run, idx, node, ctx, outcome)
            else:
                rep = self._step_forward(run, idx, node, ctx, outcome, direction)
            self.changed.notify_all()
            return rep

    def _crash(self, where: str) -> NexusCrashed:
        return NexusCrashed(self.owner, where)

    def _step_forward(
        self, run: _Run, idx: int, node: Node, ctx: SagaContext, outcome: Outcome, direction: str
    ) -> StepReport:
        if direction == "forward" and run.status.get(idx) != "started":
            self.ds.saga_record_event(run.saga_id, self.owner, idx, node.name, "started")
            run.status[idx] = "started"
        if outcome == Outcome.CRASH_BEFORE:
            raise self._crash(f"before {run.name}/{node.name}")
        if outcome == Outcome.FAIL_BEFORE:
            return self._fail(run, idx, node, InjectedFailure(f"injected before {node.name}"))
        try:
            if direction == "finish":
                assert run.waiting is not None
                waiting, run.waiting = run.waiting, None
                child = self.result(waiting.child_id)
                assert child is not None
                out = waiting.finish(child)
            else:
                out = node.action(ctx)
        except NexusPanic as e:  # Nexus aborts on panic: a crash, and the node stays pending
            run.waiting = None
            self.panicked.add(run.saga_id)
            raise self._crash(f"in {run.name}/{node.name} (panic: {e})") from e
        except Exception as e:  # an action error: the node failed (SPEC "Saga semantics")
            run.waiting = None
            if outcome == Outcome.CRASH_AFTER:
                raise self._crash(f"after {run.name}/{node.name}") from e
            return self._fail(run, idx, node, e)
        if isinstance(out, AwaitSaga):
            run.waiting = out
            if outcome == Outcome.CRASH_AFTER:
                raise self._crash(f"after {run.name}/{node.name}")
            if outcome == Outcome.FAIL_AFTER:
                run.waiting = None
                return self._fail(run, idx, node, InjectedFailure(f"injected after {node.name}"))
            return StepReport(run.saga_id, node.name, direction, "waiting", "running")
        if outcome == Outcome.CRASH_AFTER:
            raise self._crash(f"after {run.name}/{node.name}")
        if outcome == Outcome.FAIL_AFTER:
            return self._fail(run, idx, node, InjectedFailure(f"injected after {node.name}"))
        self.ds.saga_record_event(run.saga_id, self.owner, idx, node.name, "succeeded", {"output": out})
        run.status[idx] = "succeeded"
        run.outputs[node.name] = out
        if all(run.status.get(k) == "succeeded" for k in range(len(run.nodes))):
            self._finish(run, "done")
        return StepReport(run.saga_id, node.name, direction, "succeeded", self._state(run))

    def _fail(self, run: _Run, idx: int, node: Node, e: BaseException) -> StepReport:
        kind, msg = type(e).__name__, str(e)
        self.ds.saga_record_event(
            run.saga_id, self.owner, idx, node.name, "failed", {"kind": kind, "message": msg}
        )
        run.status[idx] = "failed"
        run.mode = "unwinding"
        run.failed_node, run.error_kind, run.error_message = node.name, kind, msg
        self.ds.saga_set_state(run.saga_id, "unwinding")
        if self._next(run) is None:
            self._finish(run, "unwound")
        return StepReport(run.saga_id, node.name, "forward", "failed", self._state(run), f"{kind}: {msg}")

    def _step_undo(self, run: _Run, idx: int, node: Node, ctx: SagaContext, outcome: Outcome) -> StepReport:
        assert node.undo is not None
        if run.status.get(idx) != "undo_started":
            self.ds.saga_record_event(run.saga_id, self.owner, idx, node.name, "undo_started")
            run.status[idx] = "undo_started"
        if outcome == Outcome.CRASH_BEFORE:
            raise self._crash(f"before undo {run.name}/{node.name}")
        err: BaseException | None = None
        if outcome == Outcome.FAIL_BEFORE:
            err = InjectedFailure(f"injected undo failure before {node.name}")
        else:
            try:
                node.undo(ctx)
            except Exception as e:
                err = e
            if outcome == Outcome.CRASH_AFTER:
                raise self._crash(f"after undo {run.name}/{node.name}")
            if outcome == Outcome.FAIL_AFTER and err is None:
                err = InjectedFailure(f"injected undo failure after {node.name}")
        if err is not None:
            msg = f"{type(err).__name__}: {err}"
            self.ds.saga_record_event(run.saga_id, self.owner, idx, node.name, "undo_failed", {"message": msg})
            run.status[idx] = "undo_failed"
            self._finish(run, "stuck")
            return StepReport(run.saga_id, node.name, "undo", "undo_failed", "stuck", msg)
        self.ds.saga_record_event(run.saga_id, self.owner, idx, node.name, "undo_finished")
        run.status[idx] = "undone"
        if self._next(run) is None:
            self._finish(run, "unwound")
        return StepReport(run.saga_id, node.name, "undo", "undo_finished", self._state(run))

    def _state(self, run: _Run) -> str:
        res = self._results.get(run.saga_id)
        return res.state if res is not None else run.mode

    def _finish(self, run: _Run, state: str) -> None:
        self.ds.saga_set_state(run.saga_id, state)
        self._results[run.saga_id] = SagaResult(
            run.saga_id, run.name, state, dict(run.outputs), run.failed_node, run.error_kind, run.error_message
        )
        del self._runs[run.saga_id]

    def run_until_idle(self, max_steps: int = 100_000, only: set[str] | None = None) -> int:
        """Step runnable sagas (outcome from the fault policy, default OK) until none is left."""
        steps = 0
        while steps < max_steps:
            todo = [s for s in self.runnable() if only is None or s.saga_id in only]
            if not todo:
                return steps
            info = todo[0]
            outcome = self.fault_policy(info) if self.fault_policy else Outcome.OK
            self.step(info.saga_id, outcome)
            steps += 1
        raise RuntimeError("run_until_idle: step budget exhausted")

    # ----------------------------------------------------------------- crash and recovery
    def forget_all(self) -> None:
        """A crash: every in-memory saga state (including waits on children) is lost."""
        with self.lock:
            self._runs.clear()
            self._results.clear()
            self.changed.notify_all()

    def recover(self) -> list[str]:
        """Rebuild every unfinished saga this replica owns from the log (Steno recovery)."""
        with self.lock:
            recovered = []
            for row in self.ds.saga_list(owner=self.owner, unfinished=True):
                if row.id in self._runs:
                    continue
                run = _Run(row.id, row.name, row.params, self.registry[row.name](row.params))
                for ev in self.ds.saga_events(row.id):
                    if ev.event_type == "succeeded":
                        run.outputs[ev.node_name] = ev.data["output"]
                        run.status[ev.node_index] = "succeeded"
                    elif ev.event_type == "failed":
                        run.status[ev.node_index] = "failed"
                        run.mode = "unwinding"
                        run.failed_node = ev.node_name
                        run.error_kind = ev.data["kind"]
                        run.error_message = ev.data["message"]
                    elif ev.event_type == "undo_finished":
                        run.status[ev.node_index] = "undone"
                    else:
                        run.status[ev.node_index] = ev.event_type
                self._runs[row.id] = run
                recovered.append(row.id)
                if run.mode == "unwinding" and self._next(run) is None:
                    self._finish(run, "unwound")
                elif run.mode == "running" and all(
                    run.status.get(k) == "succeeded" for k in range(len(run.nodes))
                ):
                    self._finish(run, "done")
            self.changed.notify_all()
            return recovered


def result_from_log(ds: Datastore, saga_id: str) -> SagaResult | None:
    """Rebuild a finished saga's result from the database (used across replicas and crashes)."""
    row = ds.saga_fetch(saga_id)
    if row is None or row.state not in ("done", "unwound", "stuck"):
        return None
    res = SagaResult(saga_id, row.name, row.state)
    for ev in ds.saga_events(saga_id):
        if ev.event_type == "succeeded":
            res.outputs[ev.node_name] = ev.data["output"]
        elif ev.event_type == "failed":
            res.failed_node, res.error_kind, res.error_message = ev.node_name, ev.data["kind"], ev.data["message"]
    return res
