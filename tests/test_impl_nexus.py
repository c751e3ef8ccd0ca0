"""Nexus behaviour: API dispositions (SPEC §4.2–§4.5), the report path (§4.1), background
tasks (§4.7–§4.9), failure marking (§4.10), races of §7 and the named defects."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.impl_fixtures import (
    Fault,
    backend,
    controller,
    destroy_active_vmm_without_sagas,
    drive,
    running_instance,
    stopped_instance,
)
from impl.controller import Controller
from impl.errors import BadRequest, Conflict, NotFound
from impl.executor.dag import Outcome
from impl.sagas import instance_update
from model.vocab import ExternalState, InstanceState, MigrationState, VmmState

S = ExternalState


@pytest.fixture(params=["baseline", "rfd486"])
def c(request: pytest.FixtureRequest) -> Iterator[Controller]:
    ctl = controller(backend("sqlite"), request.param)
    yield ctl
    ctl.close()


def _make(revision: str, *mutants: str) -> Controller:
    return controller(backend("sqlite"), revision, mutants)


def _fingerprint(c: Controller) -> tuple[object, ...]:
    return (
        tuple(c.datastore.instance_list(include_deleted=True)),
        tuple(c.datastore.vmm_list(include_deleted=True)),
        len(c.datastore.saga_list()),
        tuple(sorted(c.datastore.provisioning_resources())),
    )


def _other_sled(c: Controller, iid: str) -> str:
    snap = c.snapshot(iid)
    assert snap is not None and snap.active_vmm is not None
    return next(s for s in c.fleet.sleds if s != snap.active_vmm.sled_id)


def _deliver_and_run(c: Controller) -> None:
    c.deliver_all_reports()
    c.run_sagas()


# ---------------------------------------------------------------------- dispositions
def test_full_lifecycle(c: Controller) -> None:
    iid = running_instance(c)
    c.reboot_instance(iid)
    c.vmm_advance(c.advanceable_vmms()[0])
    c.deliver_all_reports()
    assert c.external_state(iid) == S.REBOOTING
    c.settle()
    assert c.external_state(iid) == S.RUNNING
    c.run_saga(c.migrate_instance(iid, _other_sled(c, iid)))
    assert c.external_state(iid) == S.MIGRATING
    c.settle()
    assert c.external_state(iid) == S.RUNNING
    c.stop_instance(iid)
    c.settle()
    assert c.external_state(iid) == S.STOPPED
    c.run_saga(c.delete_instance(iid))
    assert c.external_state(iid) == S.DESTROYED
    c.settle()
    assert c.quiescent_violations() == []


def test_refused_requests_change_nothing(c: Controller) -> None:
    iid, sid = c.create_instance("x")
    c.step(sid)  # the record exists, still Creating
    before = _fingerprint(c)
    with pytest.raises(BadRequest):
        c.stop_instance(iid)  # Creating
    with pytest.raises(Conflict):
        c.start_instance(iid)  # Creating
    with pytest.raises(BadRequest):
        c.delete_instance(iid)
    assert _fingerprint(c) == before
    c.run_saga(sid)
    c.stop_instance(iid)  # Stopped: nothing to do
    with pytest.raises(BadRequest):
        c.reboot_instance(iid)
    with pytest.raises(Conflict):
        c.migrate_instance(iid, "sled-1")
    with pytest.raises(BadRequest):
        c.migrate_instance(iid, "no-such-sled")
    with pytest.raises(NotFound):
        c.start_instance("no-such-instance")
    c.start_instance(iid)
    c.settle()
    before = _fingerprint(c)
    assert c.start_instance(iid) is None  # Running: OK, no saga
    snap = c.snapshot(iid)
    assert snap is not None and snap.active_vmm is not None
    with pytest.raises(Conflict):
        c.migrate_instance(iid, snap.active_vmm.sled_id)
    with pytest.raises(BadRequest):
        c.delete_instance(iid)
    assert _fingerprint(c) == before


def test_start_while_stopping_conflicts(c: Controller) -> None:
    iid = running_instance(c)
    c.stop_instance(iid)
    c.vmm_advance(c.advanceable_vmms()[0])
    c.deliver_all_reports()
    assert c.external_state(iid) == S.STOPPING
    with pytest.raises(Conflict):
        c.start_instance(iid)


def test_migrate_while_migrating_conflicts(c: Controller) -> None:
    iid = running_instance(c)
    c.run_saga(c.migrate_instance(iid, _other_sled(c, iid)))
    with pytest.raises(Conflict):
        c.migrate_instance(iid, _other_sled(c, iid))


def test_two_migrate_sagas_race(c: Controller) -> None:
    """R13: both pass the API check; set_migration_ids lets only the first through."""
    iid = running_instance(c)
    dst = _other_sled(c, iid)
    s1 = c.migrate_instance(iid, dst)
    s2 = c.migrate_instance(iid, dst, nexus="nexus-1")
    c.run_sagas()
    r1, r2 = c.saga_result(s1), c.saga_result(s2)
    assert r1 is not None and r1.succeeded
    assert r2 is not None and r2.state == "unwound" and r2.failed_node == "set_migration_ids"
    c.settle()
    assert c.external_state(iid) == S.RUNNING and c.quiescent_violations() == []


# ---------------------------------------------------------------------- report path (§4.1)
def test_duplicate_destroyed_report_starts_one_update(c: Controller) -> None:
    """R1(c): a resent report has a generation that is not larger, so no second saga."""
    iid = running_instance(c)
    c.stop_instance(iid)
    for _ in range(3):
        for vid in c.advanceable_vmms():
            c.vmm_advance(vid)
    reports = c.pending_reports()
    for p in reports:
        c.deliver_report(p.report_id, mode="duplicate")
    for p in reports:
        c.deliver_report(p.report_id, nexus="nexus-1")
    starts = [s for s in c.runnable() if s.saga_name == "start-instance-update"]
    assert len(starts) == 1
    c.settle()
    assert c.external_state(iid) == S.STOPPED and c.quiescent_violations() == []


def test_reordered_reports_are_applied_monotonically(c: Controller) -> None:
    iid = running_instance(c)
    c.stop_instance(iid)
    for _ in range(3):
        for vid in c.advanceable_vmms():
            c.vmm_advance(vid)
    for p in reversed(c.pending_reports()):
        c.deliver_report(p.report_id)
    snap = c.snapshot(iid)
    assert snap is not None and snap.active_vmm is not None
    assert snap.active_vmm.state == VmmState.DESTROYED
    c.settle()
    assert c.external_state(iid) == S.STOPPED


def test_dropped_report_recovered_by_watcher(c: Controller) -> None:
    iid = running_instance(c)
    c.stop_instance(iid)
    c.vmm_advance(c.advanceable_vmms()[0])  # Stopping
    for p in c.pending_reports():
        c.deliver_report(p.report_id, mode="drop")
    c.run_background("instance_watcher")  # pulls Stopping
    assert c.external_state(iid) == S.STOPPING
    c.settle()
    assert c.external_state(iid) == S.STOPPED


def test_report_to_crashed_nexus_is_retried(c: Controller) -> None:
    iid = running_instance(c)
    c.stop_instance(iid)
    c.vmm_advance(c.advanceable_vmms()[0])
    c.crash_nexus("nexus-0")
    (p,) = c.pending_reports()
    assert c.deliver_report(p.report_id) is False
    assert c.pending_reports() != []
    c.recover_nexus("nexus-0")
    assert c.deliver_report(p.report_id) is True
    c.settle()
    assert c.external_state(iid) == S.STOPPED


# ---------------------------------------------------------------------- migration outcomes
def test_source_completes_before_target(c: Controller) -> None:
    """R10: active moves to the target, ids stay until the target reports Completed."""
    iid = running_instance(c)
    snap = c.snapshot(iid)
    assert snap is not None and snap.active_vmm is not None
    src = snap.active_vmm.id
    c.run_saga(c.migrate_instance(iid, _other_sled(c, iid)))
    _deliver_and_run(c)
    snap = c.snapshot(iid)
    assert snap is not None and snap.instance.target_propolis_id is not None
    dst = snap.instance.target_propolis_id
    c.vmm_advance(src)  # migration_out Completed
    _deliver_and_run(c)
    snap = c.snapshot(iid)
    assert snap is not None
    assert snap.instance.active_propolis_id == dst and snap.instance.migration_id is not None
    assert c.external_state(iid) == S.MIGRATING
    c.vmm_advance(dst)  # migration_in Completed
    _deliver_and_run(c)
    snap = c.snapshot(iid)
    assert snap is not None and snap.instance.migration_id is None and snap.instance.target_propolis_id is None
    c.settle()
    assert c.external_state(iid) == S.RUNNING and c.quiescent_violations() == []


def test_failed_migration_stays_on_source(c: Controller) -> None:
    iid = running_instance(c)
    snap = c.snapshot(iid)
    assert snap is not None and snap.active_vmm is not None
    src = snap.active_vmm.id
    c.run_saga(c.migrate_instance(iid, _other_sled(c, iid)))
    for vid in c.advanceable_vmms():
        c.vmm_advance(vid, migration_ok=False)
    c.settle()
    snap = c.snapshot(iid)
    assert snap is not None and snap.instance.active_propolis_id == src and snap.instance.migration_id is None
    assert c.external_state(iid) == S.RUNNING and c.quiescent_violations() == []


def test_unwound_migration_leaves_ids_for_the_next_migrate(c: Controller) -> None:
    """§4.4: SET_MIGRATION_IDS has no undo; alternative (c) lets a new migrate overwrite."""
    iid = running_instance(c)
    dst = _other_sled(c, iid)
    c.migrate_instance(iid, dst)
    fault = Fault("instance-migrate", "ensure_destination_propolis", Outcome.FAIL_BEFORE)
    drive(c, fault)
    snap = c.snapshot(iid)
    assert snap is not None and snap.instance.migration_id is not None
    assert snap.target_vmm is not None and snap.target_vmm.state == VmmState.SAGA_UNWOUND
    assert snap.migration is not None and snap.migration.source_state == MigrationState.FAILED
    assert c.external_state(iid) == S.MIGRATING
    sid = c.nexus().start_saga(
        "instance-migrate",
        {"instance_id": iid, "src_propolis_id": snap.instance.active_propolis_id, "src_sled_id": "x",
         "dst_sled_id": dst, "ncpus": 2, "memory": 1024},
    )
    res = c.run_saga(sid)
    assert res is not None and res.succeeded  # overwrote the unwound ids via (c)
    c.settle()
    assert c.external_state(iid) == S.RUNNING and c.quiescent_violations() == []


# ---------------------------------------------------------------------- failures (§4.10)
def test_vmm_failure(c: Controller) -> None:
    iid = running_instance(c)
    snap = c.snapshot(iid)
    assert snap is not None and snap.active_vmm is not None
    c.vmm_fail(snap.active_vmm.id)
    c.settle()
    inst = c.snapshot(iid)
    assert inst is not None
    if c.datastore.revision == "baseline":
        # G4: no update saga for Failed; the instance shows Failed and is stuck.
        assert c.external_state(iid) == S.FAILED and inst.instance.active_propolis_id is not None
        with pytest.raises(Conflict):
            c.start_instance(iid)
        with pytest.raises(BadRequest):
            c.delete_instance(iid)
    else:
        assert c.external_state(iid) == S.FAILED and inst.instance.state == InstanceState.FAILED
        assert c.quiescent_violations() == []
        c.start_instance(iid)
        c.settle()
        assert c.external_state(iid) == S.RUNNING


def test_vanished_vmm(c: Controller) -> None:
    iid = running_instance(c)
    snap = c.snapshot(iid)
    assert snap is not None and snap.active_vmm is not None
    c.vmm_vanish(snap.active_vmm.id)
    stats = c.run_background("instance_watcher")
    assert stats["no_such_instance"] == 1
    c.settle()
    if c.datastore.revision == "baseline":
        assert c.external_state(iid) == S.RUNNING  # no recovery at the baseline (§8)
    else:
        assert c.external_state(iid) == S.FAILED and c.quiescent_violations() == []


def test_unhealthy_sled_on_stop(c: Controller) -> None:
    iid = running_instance(c)
    snap = c.snapshot(iid)
    assert snap is not None and snap.active_vmm is not None
    c.set_sled_unhealthy(snap.active_vmm.sled_id)
    with pytest.raises(Exception, match="unreachable"):
        c.stop_instance(iid)
    inst = c.snapshot(iid)
    assert inst is not None
    if c.datastore.revision == "baseline":
        # mark_instance_failed: Failed, active cleared, charge kept (#4226, quirk Q3)
        assert inst.instance.state == InstanceState.FAILED and inst.instance.active_propolis_id is None
        assert iid in c.datastore.provisioning_resources()
    else:
        assert inst.instance.state == InstanceState.VMM


# ---------------------------------------------------------------------- races (§7)
def test_parent_replay_creates_second_child(c: Controller) -> None:
    """R6: the parent's node 3 re-runs after a crash; the second child loses the inherit."""
    iid = running_instance(c)
    destroy_active_vmm_without_sagas(c, iid)
    parent = next(s for s in c.runnable() if s.saga_name == "start-instance-update")
    for _ in range(3):
        c.step(parent.saga_id)  # lock id, lock, start child (waiting)
    child = next(s for s in c.runnable() if s.saga_name == "instance-update")
    c.step(child.saga_id)
    c.step(child.saga_id)  # child inherited
    c.crash_nexus("nexus-0")
    c.recover_nexus("nexus-0")
    c.run_sagas()
    children = [s for s in c.datastore.saga_list() if s.name == "instance-update"]
    assert len(children) == 2
    results = [c.saga_result(s.id) for s in children]
    assert sorted(r.state for r in results if r is not None) == ["done", "unwound"]
    pres = c.saga_result(parent.saga_id)
    assert pres is not None and pres.succeeded
    c.settle()
    assert c.external_state(iid) == S.STOPPED and c.quiescent_violations() == []


def test_lock_contention_is_recovered_by_background_updater(c: Controller) -> None:
    """R16/G5: a start-instance-update that finds the lock taken just exits."""
    iid = running_instance(c)
    lock = c.datastore.instance_updater_lock(iid, "someone")
    destroy_active_vmm_without_sagas(c, iid)
    c.run_sagas()
    assert c.external_state(iid) == S.STOPPING
    c.datastore.instance_updater_unlock(iid, lock)
    c.run_background("instance_updater")
    c.run_sagas()
    assert c.external_state(iid) == S.STOPPED


def test_stuck_saga_reported(c: Controller) -> None:
    iid = stopped_instance(c)
    sid = c.start_instance(iid)
    assert sid is not None
    for _ in range(9):
        c.step(sid)
    c.step(sid, Outcome.FAIL_BEFORE)
    rep = c.step(sid, Outcome.FAIL_BEFORE)  # the first undo fails
    assert rep.event == "undo_failed" and rep.saga_state == "stuck"
    res = c.saga_result(sid)
    assert res is not None and res.state == "stuck"


# ---------------------------------------------------------------------- named defects
def _bump_gen(c: Controller, iid: str) -> None:
    inst = c.datastore.instance_fetch(iid)
    assert inst is not None
    assert c.datastore.instance_update_runtime(iid, inst.runtime.with_(gen=inst.state_generation + 1))


@pytest.mark.parametrize("mutant", [False, True])
def test_mutant_start_unwind_clears_unconditionally(mutant: bool) -> None:
    c = _make("baseline", *(["start-unwind-clears-unconditionally"] if mutant else []))
    iid = stopped_instance(c)
    sid = c.start_instance(iid)
    assert sid is not None
    for _ in range(5):
        c.step(sid)  # through started_record
    _bump_gen(c, iid)  # someone else moved the instance on (R9)
    c.step(sid, Outcome.FAIL_BEFORE)
    c.run_sagas()
    inst = c.datastore.instance_fetch(iid)
    assert inst is not None
    assert (inst.active_propolis_id is None) is mutant
    c.close()


@pytest.mark.parametrize("mutant", [False, True])
def test_mutant_migrate_unwind_clears_ids(mutant: bool) -> None:
    c = _make("rfd486", *(["migrate-unwind-clears-ids"] if mutant else []))
    iid = running_instance(c)
    sid = c.migrate_instance(iid, _other_sled(c, iid))
    for _ in range(8):
        c.step(sid)
    c.step(sid, Outcome.FAIL_BEFORE)  # instance_migrate
    while any(s.saga_id == sid for s in c.runnable()):
        c.step(sid)  # only the migrate saga unwinds; the update saga it triggered waits
    inst = c.datastore.instance_fetch(iid)
    assert inst is not None and (inst.migration_id is None) is mutant
    c.close()


@pytest.mark.parametrize("mutant", [False, True])
def test_mutant_clear_ids_on_source_completed(mutant: bool) -> None:
    c = _make("baseline", *(["clear-ids-on-source-completed"] if mutant else []))
    iid = running_instance(c)
    snap = c.snapshot(iid)
    assert snap is not None and snap.active_vmm is not None
    c.run_saga(c.migrate_instance(iid, _other_sled(c, iid)))
    _deliver_and_run(c)
    c.vmm_advance(snap.active_vmm.id)  # source Completed only
    _deliver_and_run(c)
    inst = c.datastore.instance_fetch(iid)
    assert inst is not None and (inst.migration_id is None) is mutant
    c.close()


@pytest.mark.parametrize("mutant", [False, True])
def test_mutant_delete_vmm_before_commit(mutant: bool) -> None:
    c = _make("baseline", *(["delete-vmm-before-commit"] if mutant else []))
    iid = running_instance(c)
    destroy_active_vmm_without_sagas(c, iid)
    drive(c, Fault("instance-update", "commit_instance_updates", Outcome.FAIL_BEFORE))
    snap = c.datastore.instance_fetch_all(iid)
    assert snap is not None
    dangling = snap.instance.active_propolis_id is not None and snap.active_vmm is None
    assert dangling is mutant  # R15: the instance points at a deleted VMM
    # and the DAG order itself:
    names = [n.name for n in instance_update.build({
        "update": {"new_runtime": snap.instance.runtime.to_json(), "destroy_active_vmm": "v",
                   "destroy_target_vmm": None, "deprovision": None, "network_config": None},
        "mutants": ["delete-vmm-before-commit"] if mutant else [],
    })]
    assert (names.index("commit_instance_updates") < names.index("active_vmm_destroyed.mark_vmm_deleted")) is not mutant
    c.close()


@pytest.mark.parametrize("mutant", [False, True])
def test_mutant_no_updater_lock_double_release(mutant: bool) -> None:
    """R1: two update sagas over one snapshot; without the lock both release provisioning."""
    c = _make("baseline", *(["no-updater-lock", "release-not-idempotent"] if mutant else ["release-not-idempotent"]))
    iid = running_instance(c)
    destroy_active_vmm_without_sagas(c, iid)
    c.nexus().start_saga("start-instance-update", {"instance_id": iid})
    # run both parents' lock+fetch before any child commits
    for _ in range(3):
        for s in [s for s in c.runnable() if s.saga_name == "start-instance-update"]:
            c.step(s.saga_id)
    c.run_sagas()
    counters = c.datastore.provisioning_counters()["project"]
    assert (counters[0] < 0) is mutant
    c.close()


def test_every_impl_mutant_is_accepted_by_name() -> None:
    from impl.config import LifecycleConfig
    from model.vocab import MUTANTS

    for name, m in MUTANTS.items():
        cfg = LifecycleConfig("baseline", frozenset({name}))
        assert cfg.has(name) and (m.in_impl or name == "no-background-updater")


@pytest.mark.parametrize("mutant", [False, True])
def test_mutant_no_background_updater(mutant: bool) -> None:
    c = _make("baseline", *(["no-background-updater"] if mutant else []))
    iid = running_instance(c)
    lock = c.datastore.instance_updater_lock(iid, "someone")
    destroy_active_vmm_without_sagas(c, iid)
    c.run_sagas()  # the update saga finds the lock taken and exits (G5)
    c.datastore.instance_updater_unlock(iid, lock)
    c.run_background("instance_updater")
    c.run_sagas()
    assert (c.external_state(iid) == S.STOPPING) is mutant  # R16
    c.close()
