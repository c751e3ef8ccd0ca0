"""Saga executor semantics (SPEC "Saga semantics", §5 crash cases) on a toy saga."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conformance.impl_fixtures import PG_SKIP_REASON, backend, pg_url
from impl.config import LifecycleConfig
from impl.datastore import Datastore
from impl.errors import NexusCrashed
from impl.executor.context import SagaContext
from impl.executor.dag import AwaitSaga, Node, Outcome, SagaResult
from impl.executor.saga_executor import SagaExecutor, result_from_log
from impl.ids import IdSource


class ToyNexus:
    """Just what `SagaContext` needs: a datastore, ids, and a journal of effects."""

    def __init__(self, ds: Datastore) -> None:
        self.datastore = ds
        self.ids = IdSource(1)
        self.journal: list[str] = []
        self.fail_at: set[str] = set()
        self.undo_fail_at: set[str] = set()


def _node(name: str, with_undo: bool = True) -> Node:
    def action(ctx: SagaContext) -> Any:
        nx: ToyNexus = ctx.nexus  # type: ignore[assignment]
        nx.journal.append(f"do {name}")
        if name in nx.fail_at:
            raise RuntimeError(f"{name} failed")
        return f"out-{name}"

    def undo(ctx: SagaContext) -> None:
        nx: ToyNexus = ctx.nexus  # type: ignore[assignment]
        nx.journal.append(f"undo {name}")
        if name in nx.undo_fail_at:
            raise RuntimeError(f"undo {name} failed")

    return Node(name, action, undo if with_undo else None)


def _toy(params: dict[str, Any]) -> list[Node]:
    return [_node("a"), _node("b", with_undo=False), _node("c"), _node("d")]


def _parent(params: dict[str, Any]) -> list[Node]:
    def spawn(ctx: SagaContext) -> Any:
        nx: ToyNexus = ctx.nexus  # type: ignore[assignment]
        child = ctx.new_id()
        nx.executor.create(child, "toy", {})  # type: ignore[attr-defined]
        return AwaitSaga(child, lambda r: {"child": r.saga_id, "state": r.state})

    return [Node("spawn", spawn)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ds(request: pytest.FixtureRequest) -> Iterator[Datastore]:
    if request.param == "postgres" and pg_url() is None:
        pytest.skip(PG_SKIP_REASON)
    b = backend(request.param)
    d = Datastore(b.url, LifecycleConfig(), pg_schema=b.pg_schema)
    yield d
    d.dispose(drop_schema=True)


def _exec(ds: Datastore, owner: str = "n0") -> tuple[ToyNexus, SagaExecutor]:
    nx = ToyNexus(ds)
    ex = SagaExecutor(owner, nx, {"toy": _toy, "parent": _parent})  # type: ignore[arg-type]
    nx.executor = ex  # type: ignore[attr-defined]
    return nx, ex


def _run(ex: SagaExecutor, saga_id: str) -> SagaResult:
    ex.run_until_idle()
    res = ex.result(saga_id)
    assert res is not None
    return res


def test_success_records_outputs(ds: Datastore) -> None:
    nx, ex = _exec(ds)
    ex.create("s", "toy", {})
    res = _run(ex, "s")
    assert res.state == "done" and res.outputs["d"] == "out-d"
    assert nx.journal == ["do a", "do b", "do c", "do d"]
    assert result_from_log(ds, "s") == res


def test_failure_undoes_succeeded_nodes_in_reverse(ds: Datastore) -> None:
    nx, ex = _exec(ds)
    nx.fail_at.add("d")
    ex.create("s", "toy", {})
    res = _run(ex, "s")
    assert res.state == "unwound" and res.failed_node == "d" and res.error_kind == "RuntimeError"
    # d's own undo does not run; b has none
    assert nx.journal == ["do a", "do b", "do c", "do d", "undo c", "undo a"]


@pytest.mark.parametrize("outcome", [Outcome.FAIL_BEFORE, Outcome.FAIL_AFTER])
def test_injected_failures(ds: Datastore, outcome: Outcome) -> None:
    nx, ex = _exec(ds)
    ex.create("s", "toy", {})
    ex.step("s")
    rep = ex.step("s")  # b
    assert rep.event == "succeeded"
    rep = ex.step("s", outcome)  # c
    assert rep.event == "failed"
    ex.run_until_idle()
    effects = ["do a", "do b"] + (["do c"] if outcome == Outcome.FAIL_AFTER else [])
    assert nx.journal == effects + ["undo a"]


def test_crash_before_reexecutes_once(ds: Datastore) -> None:
    nx, ex = _exec(ds)
    ex.create("s", "toy", {})
    ex.step("s")
    with pytest.raises(NexusCrashed):
        ex.step("s", Outcome.CRASH_BEFORE)
    ex.forget_all()
    assert ex.runnable() == []
    assert ex.recover() == ["s"]
    res = _run(ex, "s")
    assert res.state == "done" and nx.journal == ["do a", "do b", "do c", "do d"]


def test_crash_after_effect_runs_node_twice_and_reuses_outputs(ds: Datastore) -> None:
    nx, ex = _exec(ds)
    ex.create("s", "toy", {})
    ex.step("s")
    with pytest.raises(NexusCrashed):
        ex.step("s", Outcome.CRASH_AFTER)
    ex.forget_all()
    nx2, ex2 = _exec(ds)  # a restarted process with the same owner id
    ex2.recover()
    res = _run(ex2, "s")
    assert res.outputs["a"] == "out-a"
    assert nx.journal == ["do a", "do b"] and nx2.journal == ["do b", "do c", "do d"]


def test_crash_during_unwind_reruns_undo(ds: Datastore) -> None:
    nx, ex = _exec(ds)
    nx.fail_at.add("d")
    ex.create("s", "toy", {})
    for _ in range(4):
        ex.step("s")
    with pytest.raises(NexusCrashed):
        ex.step("s", Outcome.CRASH_AFTER)  # undo c ran, not recorded
    ex.forget_all()
    ex.recover()
    res = _run(ex, "s")
    assert res.state == "unwound"
    assert nx.journal[-3:] == ["undo c", "undo c", "undo a"]


def test_undo_failure_leaves_saga_stuck(ds: Datastore) -> None:
    nx, ex = _exec(ds)
    nx.fail_at.add("d")
    nx.undo_fail_at.add("c")
    ex.create("s", "toy", {})
    res = _run(ex, "s")
    assert res.state == "stuck"
    assert "undo a" not in nx.journal
    row = ds.saga_fetch("s")
    assert row is not None and row.state == "stuck"
    assert ex.recover() == []  # finished sagas are not recovered


def test_recovery_only_of_own_sagas(ds: Datastore) -> None:
    _, ex0 = _exec(ds, "n0")
    _, ex1 = _exec(ds, "n1")
    ex0.create("s0", "toy", {})
    ex1.create("s1", "toy", {})
    ex0.forget_all()
    assert ex0.recover() == ["s0"]


def test_waiting_for_child_and_crash_restarts_child(ds: Datastore) -> None:
    nx, ex = _exec(ds)
    ex.create("p", "parent", {})
    rep = ex.step("p")
    assert rep.event == "waiting"
    assert [s.saga_id for s in ex.runnable()] != ["p"]  # only the child can run
    ex.forget_all()
    ex.recover()  # the parent re-executes its node and starts a second child (R6)
    res = _run(ex, "p")
    assert res.state == "done"
    names = [r.name for r in ds.saga_list()]
    assert names.count("toy") == 2
