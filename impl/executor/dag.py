"""Saga building blocks: nodes, step outcomes, results (SPEC "Saga semantics").

A saga is a sequence of `Node`s. A sub-saga (the update saga's destroy-VMM sub-sagas, SPEC
§4.6 nodes 7–8) is inlined as consecutive nodes whose names carry the sub-saga's name as a
prefix (`active_vmm_destroyed.release_sled_resources`); Steno runs sub-saga nodes inside the
parent DAG in the same way. A node that starts a *separate* saga and waits for it (the
start-instance-update saga's node 3) returns `AwaitSaga`; the wait lives only in memory, so a
crash makes the node re-execute and start a fresh child (race R6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from impl.executor.context import SagaContext


class Outcome(StrEnum):
    """What happens at one step of a saga (the controller picks it; SPEC §5 crash cases).

    * `OK` — the action (or undo) runs and its completion is recorded.
    * `CRASH_BEFORE` — the `started` event is recorded, then the Nexus crashes before the effect.
    * `CRASH_AFTER` — the action takes effect, then the Nexus crashes before recording it.
    * `FAIL_BEFORE` — the action fails without any effect (the node is recorded `failed`).
    * `FAIL_AFTER` — the action takes effect and is still reported failed.

    For an undo step `FAIL_BEFORE`/`FAIL_AFTER` make the undo fail, which leaves the saga stuck.
    """

    OK = "ok"
    CRASH_BEFORE = "crash_before"
    CRASH_AFTER = "crash_after"
    FAIL_BEFORE = "fail_before"
    FAIL_AFTER = "fail_after"


Action = Callable[["SagaContext"], Any]
Undo = Callable[["SagaContext"], None]


@dataclass(frozen=True)
class Node:
    """One saga node: a name (also the name its output is recorded under), an action, an undo."""

    name: str
    action: Action
    undo: Undo | None = None


@dataclass
class AwaitSaga:
    """Returned by an action that started another saga and must wait for it to stop.

    When the child has finished, the executor calls `finish(child_result)`; it returns the
    node's output or raises to fail the node.
    """

    child_id: str
    finish: Callable[[SagaResult], Any]


@dataclass
class SagaResult:
    """How a saga ended: `done`, `unwound` (failed and fully undone) or `stuck`."""

    saga_id: str
    name: str
    state: str
    outputs: dict[str, Any] = field(default_factory=dict)
    failed_node: str | None = None
    error_kind: str | None = None
    error_message: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.state == "done"


@dataclass(frozen=True)
class StepInfo:
    """A saga's next step, as listed by `SagaExecutor.runnable()` and the controller."""

    saga_id: str
    saga_name: str
    owner: str
    node_index: int
    node_name: str
    direction: str  # "forward", "finish" (collect a waited-for child) or "undo"
    replay: bool = False  # the node (or undo) started before a crash and runs again


@dataclass(frozen=True)
class StepReport:
    """What one `step` did."""

    saga_id: str
    node_name: str
    direction: str
    event: str  # succeeded | failed | waiting | undo_finished | undo_failed | crashed
    saga_state: str
    error: str | None = None
