"""The step-by-step controller API that model traces are replayed through (impl/controller.py)."""

from __future__ import annotations

import pytest

from conformance.impl_fixtures import backend, controller, running_instance
from impl.controller import Controller
from impl.errors import NexusUnavailable
from impl.executor.dag import Outcome
from model.vocab import ExternalState


def _script(c: Controller) -> tuple[object, ...]:
    iid = running_instance(c)
    snap = c.snapshot(iid)
    assert snap is not None and snap.active_vmm is not None
    c.run_saga(c.migrate_instance(iid, "sled-2" if snap.active_vmm.sled_id != "sled-2" else "sled-1"))
    c.settle()
    fp = c.fingerprint()
    return tuple(
        tuple((getattr(r, "id", None), getattr(r, "state", None)) for r in part) if isinstance(part, tuple) else part
        for part in fp
    )


def test_same_seed_same_choices_same_run() -> None:
    a = controller(backend("sqlite"), seed=42)
    b = controller(backend("sqlite"), seed=42)
    assert _script(a) == _script(b)
    a.close()
    b.close()


def test_runnable_lists_next_node_and_step_reports() -> None:
    c = controller(backend("sqlite"))
    iid, sid = c.create_instance("x", nexus="nexus-1")
    (info,) = c.runnable()
    assert (info.saga_id, info.owner, info.node_name, info.direction) == (sid, "nexus-1", "create_instance_record", "forward")
    rep = c.step(sid)
    assert rep.event == "succeeded" and rep.node_name == "create_instance_record"
    rep = c.step(sid, "fail_before")
    assert rep.event == "failed" and rep.error is not None
    (undo,) = c.runnable()
    assert undo.direction == "undo" and undo.node_name == "create_instance_record"
    c.run_sagas()
    res = c.saga_result(sid)
    assert res is not None and res.state == "unwound"
    assert c.external_state(iid) == ExternalState.DESTROYED
    c.close()


def test_crash_freezes_replica_until_recovery() -> None:
    c = controller(backend("sqlite"))
    iid, sid = c.create_instance("x")
    rep = c.step(sid, Outcome.CRASH_AFTER)
    assert rep.event == "crashed"
    assert c.runnable() == []
    with pytest.raises(NexusUnavailable):
        c.start_instance(iid)
    other_iid, other = c.create_instance("y", nexus="nexus-1")  # the other replica still works
    assert [s.saga_id for s in c.runnable()] == [other]
    assert c.recover_nexus("nexus-0") == [sid]
    c.run_sagas()
    assert c.external_state(iid) == ExternalState.STOPPED
    assert c.external_state(other_iid) == ExternalState.STOPPED
    c.close()


def test_recover_on_another_replica() -> None:
    c = controller(backend("sqlite"))
    iid, sid = c.create_instance("x")
    c.step(sid, Outcome.CRASH_BEFORE)
    assert c.recover_nexus("nexus-0", on="nexus-1") == [sid]
    row = c.datastore.saga_fetch(sid)
    assert row is not None and row.owner == "nexus-1"
    c.run_sagas()
    assert c.external_state(iid) == ExternalState.STOPPED
    c.close()


def test_pending_activations_and_background_on_demand() -> None:
    c = controller(backend("sqlite"))
    iid = running_instance(c)
    c.stop_instance(iid)
    for _ in range(3):
        for vid in c.advanceable_vmms():
            c.vmm_advance(vid)
    c.deliver_all_reports()
    sagas = c.run_background("instance_updater")
    assert len(sagas) == 1  # found the destroyed active VMM (the report's saga has not run)
    c.run_sagas()
    acts = c.pending_activations()
    assert acts["nexus-0"]["v2p_manager"] >= 1
    assert c.external_state(iid) == ExternalState.STOPPED
    c.close()
