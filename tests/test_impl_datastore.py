"""Datastore tests: every conditional query of SPEC §4–§5 on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from conformance.impl_fixtures import PG_SKIP_REASON, backend, pg_url
from impl.config import LifecycleConfig
from impl.datastore import Datastore, determine_effective_state
from impl.datastore.records import (
    InstanceRecord,
    MigrationRuntime,
    UpdaterLock,
    VmmRecord,
    VmmRuntime,
    now,
)
from impl.errors import (
    AlreadyLocked,
    BadRequest,
    Conflict,
    InternalError,
    NotFound,
    UpdaterLockError,
)
from model.vocab import ExternalState, InstanceState, MigrationState, VmmState

MakeDs = Callable[..., Datastore]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_ds(request: pytest.FixtureRequest) -> Iterator[MakeDs]:
    if request.param == "postgres" and pg_url() is None:
        pytest.skip(PG_SKIP_REASON)
    made: list[Datastore] = []

    def make(revision: str = "baseline", mutants: tuple[str, ...] = ()) -> Datastore:
        b = backend(request.param)
        ds = Datastore(b.url, LifecycleConfig(revision, frozenset(mutants)), pg_schema=b.pg_schema)
        ds.sled_upsert("sled-0", "fd00::1")
        ds.sled_upsert("sled-1", "fd00::2")
        made.append(ds)
        return ds

    yield make
    for ds in made:
        ds.dispose(drop_schema=True)


@pytest.fixture
def ds(make_ds: MakeDs) -> Datastore:
    return make_ds()


def _rt(ds: Datastore, iid: str, **kw: object) -> bool:
    inst = ds.instance_fetch(iid)
    assert inst is not None
    return ds.instance_update_runtime(iid, inst.runtime.with_(time_updated=now(), **kw))


def _stopped(ds: Datastore, iid: str = "i1") -> InstanceRecord:
    ds.instance_create(iid, iid, 2, 1024)
    assert _rt(ds, iid, nexus_state=InstanceState.NO_VMM, gen=2)
    inst = ds.instance_fetch(iid)
    assert inst is not None
    return inst


def _running(ds: Datastore, iid: str = "i1", vmm_id: str = "v1", sled: str = "sled-0") -> InstanceRecord:
    inst = _stopped(ds, iid)
    ds.vmm_insert(vmm_id, iid, sled, "fd00::1", VmmState.STARTING)
    assert _rt(ds, iid, nexus_state=InstanceState.VMM, propolis_id=vmm_id, gen=inst.state_generation + 1)
    assert ds.vmm_update_runtime(vmm_id, VmmRuntime(VmmState.RUNNING, 2, now()))
    out = ds.instance_fetch(iid)
    assert out is not None
    return out


# ---------------------------------------------------------------------- updater lock (SPEC §5)
def test_lock_acquire_and_idempotent_reacquire(ds: Datastore) -> None:
    _stopped(ds)
    lock = ds.instance_updater_lock("i1", "L")
    assert lock == UpdaterLock("L", 2)
    assert ds.instance_updater_lock("i1", "L") == lock
    inst = ds.instance_fetch("i1")
    assert inst is not None and inst.updater_id == "L" and inst.updater_gen == 2


def test_lock_held_by_someone_else(ds: Datastore) -> None:
    _stopped(ds)
    ds.instance_updater_lock("i1", "L")
    with pytest.raises(AlreadyLocked):
        ds.instance_updater_lock("i1", "M")


def test_lock_on_deleted_instance_is_query_error(ds: Datastore) -> None:
    _stopped(ds)
    ds.project_delete_instance("i1")
    with pytest.raises(UpdaterLockError):
        ds.instance_updater_lock("i1", "L")


def test_unlock_releases_once(ds: Datastore) -> None:
    _stopped(ds)
    lock = ds.instance_updater_lock("i1", "L")
    assert ds.instance_updater_unlock("i1", lock) is True
    assert ds.instance_updater_unlock("i1", lock) is False  # stale: already released
    inst = ds.instance_fetch("i1")
    assert inst is not None and inst.updater_id is None and inst.updater_gen == 3


def test_stale_unlock_leaves_new_holder(ds: Datastore) -> None:
    _stopped(ds)
    old = ds.instance_updater_lock("i1", "L")
    ds.instance_updater_unlock("i1", old)
    ds.instance_updater_lock("i1", "M")
    assert ds.instance_updater_unlock("i1", old) is False
    inst = ds.instance_fetch("i1")
    assert inst is not None and inst.updater_id == "M"


def test_unlock_same_id_wrong_generation_is_internal_error(ds: Datastore) -> None:
    _stopped(ds)
    lock = ds.instance_updater_lock("i1", "L")
    with pytest.raises(InternalError):
        ds.instance_updater_unlock("i1", UpdaterLock("L", lock.locked_gen + 5))


def test_unlocking_a_deleted_instance_is_okay(ds: Datastore) -> None:
    _stopped(ds)
    lock = ds.instance_updater_lock("i1", "L")
    ds.project_delete_instance("i1")
    assert ds.instance_updater_unlock("i1", lock) is False
    with pytest.raises(NotFound):
        ds.instance_updater_unlock("nope", lock)


def test_inheriting_on_a_deleted_instance_is_already_locked(ds: Datastore) -> None:
    """SPEC §5: a failed inherit that does not find the child's own id is AlreadyLocked,
    also when the instance was deleted meanwhile; the parent then finishes (§4.6)."""
    _stopped(ds)
    parent = ds.instance_updater_lock("i1", "P")
    ds.project_delete_instance("i1")
    with pytest.raises(AlreadyLocked, match="instance deleted"):
        ds.instance_updater_inherit_lock("i1", parent, "C")


def test_inherit_lock(ds: Datastore) -> None:
    _stopped(ds)
    parent = ds.instance_updater_lock("i1", "P")
    child = ds.instance_updater_inherit_lock("i1", parent, "C")
    assert child == UpdaterLock("C", parent.locked_gen + 1)
    assert ds.instance_updater_inherit_lock("i1", parent, "C") == child  # idempotent
    with pytest.raises(AlreadyLocked):
        ds.instance_updater_inherit_lock("i1", parent, "C2")  # a sibling (race R6)
    assert ds.instance_updater_unlock("i1", parent) is False  # parent's token is stale
    inst = ds.instance_fetch("i1")
    assert inst is not None and inst.updater_id == "C"


def test_commit_update_and_replay(ds: Datastore) -> None:
    inst = _stopped(ds)
    lock = ds.instance_updater_lock("i1", "L")
    new = inst.runtime.with_(gen=inst.state_generation + 1, time_updated=now())
    assert ds.instance_commit_update("i1", lock, new) is True
    assert ds.instance_commit_update("i1", lock, new) is False  # replay (R8)
    after = ds.instance_fetch("i1")
    assert after is not None and after.updater_id is None and after.state_generation == new.gen
    assert after.updater_gen == lock.locked_gen + 1


def test_commit_after_state_moved_on_conflicts(ds: Datastore) -> None:
    inst = _stopped(ds)
    lock = ds.instance_updater_lock("i1", "L")
    assert _rt(ds, "i1", gen=inst.state_generation + 1)  # e.g. a migrate saga (R3)
    new = inst.runtime.with_(gen=inst.state_generation + 1, time_updated=now())
    with pytest.raises(Conflict):
        ds.instance_commit_update("i1", lock, new)
    after = ds.instance_fetch("i1")
    assert after is not None and after.updater_id == "L"


def test_commit_on_deleted_instance_is_not_found(ds: Datastore) -> None:
    inst = _stopped(ds)
    lock = ds.instance_updater_lock("i1", "L")
    ds.project_delete_instance("i1")
    with pytest.raises(NotFound):
        ds.instance_commit_update("i1", lock, inst.runtime.with_(gen=inst.state_generation + 1))


def test_commit_with_foreign_lock_is_internal_error(ds: Datastore) -> None:
    inst = _stopped(ds)
    ds.instance_updater_lock("i1", "L")
    with pytest.raises(InternalError):
        ds.instance_commit_update("i1", UpdaterLock("X", 99), inst.runtime.with_(gen=inst.state_generation + 1))


# ---------------------------------------------------------------------- lock mutants
def test_mutant_commit_ignores_generation(make_ds: MakeDs) -> None:
    ds = make_ds(mutants=("commit-ignores-generation",))
    inst = _stopped(ds)
    lock = ds.instance_updater_lock("i1", "L")
    assert _rt(ds, "i1", gen=inst.state_generation + 1)
    assert ds.instance_commit_update("i1", lock, inst.runtime.with_(gen=inst.state_generation + 1)) is True


def test_mutant_unlock_ignores_holder(make_ds: MakeDs) -> None:
    ds = make_ds(mutants=("unlock-ignores-holder",))
    _stopped(ds)
    old = ds.instance_updater_lock("i1", "L")
    ds.instance_updater_unlock("i1", old)
    ds.instance_updater_lock("i1", "M")
    assert ds.instance_updater_unlock("i1", old) is True
    inst = ds.instance_fetch("i1")
    assert inst is not None and inst.updater_id is None


def test_mutant_lock_in_runtime_state_clobbers_lock(make_ds: MakeDs) -> None:
    ds = make_ds(mutants=("lock-in-runtime-state",))
    inst = _stopped(ds)  # read while unlocked
    ds.instance_updater_lock("i1", "L")
    assert ds.instance_update_runtime("i1", inst.runtime.with_(gen=inst.state_generation + 1))
    after = ds.instance_fetch("i1")
    assert after is not None and after.updater_id is None  # the lock was released by a runtime write


def test_mutant_no_updater_lock_takes_nothing(make_ds: MakeDs) -> None:
    ds = make_ds(mutants=("no-updater-lock",))
    _stopped(ds)
    ds.instance_updater_lock("i1", "L")
    ds.instance_updater_lock("i1", "M")  # no AlreadyLocked
    inst = ds.instance_fetch("i1")
    assert inst is not None and inst.updater_id is None


# ---------------------------------------------------------------------- runtime CAS, delete
def test_update_runtime_is_cas_on_generation(ds: Datastore) -> None:
    inst = _stopped(ds)
    assert not _rt(ds, "i1", gen=inst.state_generation)  # not larger
    assert _rt(ds, "i1", gen=inst.state_generation + 1)
    lock = ds.instance_updater_lock("i1", "L")
    assert _rt(ds, "i1", gen=inst.state_generation + 2)
    after = ds.instance_fetch("i1")
    assert after is not None and after.updater_id == "L" and after.updater_gen == lock.locked_gen


def test_vmm_iff_active_propolis_check_constraint(ds: Datastore) -> None:
    _stopped(ds)
    with pytest.raises(Exception, match="(?i)check|constraint"):
        _rt(ds, "i1", nexus_state=InstanceState.VMM, gen=10)


def test_project_delete_instance(ds: Datastore) -> None:
    _running(ds)
    with pytest.raises(BadRequest, match="not yet fully stopped"):
        ds.project_delete_instance("i1")
    _stopped(ds, "i2")
    ds.migration_insert("m2", "i2", "a", "b")
    ds.project_delete_instance("i2")
    inst = ds.instance_fetch("i2")
    mig = ds.migration_fetch("m2")
    assert inst is not None and inst.state == InstanceState.DESTROYED and inst.time_deleted is not None
    assert mig is not None and mig.time_deleted is not None
    with pytest.raises(NotFound):
        ds.project_delete_instance("i2")


def test_project_delete_refuses_creating(ds: Datastore) -> None:
    ds.instance_create("i1", "i1", 1, 1)
    with pytest.raises(BadRequest):
        ds.project_delete_instance("i1")


# ---------------------------------------------------------------------- migration ids (§4.4)
def test_set_migration_ids_alternatives(ds: Datastore) -> None:
    before = _running(ds)
    ds.vmm_insert("t1", "i1", "sled-1", "fd00::2", VmmState.MIGRATING)
    ds.migration_insert("m1", "i1", "v1", "t1")
    rec = ds.instance_set_migration_ids("i1", "v1", "m1", "t1")  # (a)
    assert rec.migration_id == "m1" and rec.state_generation == before.state_generation + 1
    again = ds.instance_set_migration_ids("i1", "v1", "m1", "t1")  # (b) idempotent
    assert again.migration_id == "m1"
    ds.vmm_insert("t2", "i1", "sled-1", "fd00::2", VmmState.MIGRATING)
    with pytest.raises(Conflict):
        ds.instance_set_migration_ids("i1", "v1", "m2", "t2")
    # (c): the earlier migrate saga unwound: target SagaUnwound and migration Failed/Failed.
    assert ds.vmm_mark_saga_unwound("t1", 1)
    with pytest.raises(Conflict):
        ds.instance_set_migration_ids("i1", "v1", "m2", "t2")  # migration not failed yet
    assert ds.migration_mark_failed("m1")
    rec = ds.instance_set_migration_ids("i1", "v1", "m2", "t2")
    assert rec.migration_id == "m2" and rec.target_propolis_id == "t2"


def test_set_migration_ids_needs_running_source(ds: Datastore) -> None:
    _running(ds)
    ds.vmm_update_runtime("v1", VmmRuntime(VmmState.STOPPING, 3, now()))
    with pytest.raises(Conflict):
        ds.instance_set_migration_ids("i1", "v1", "m1", "t1")
    with pytest.raises(Conflict):
        ds.instance_set_migration_ids("i1", "other", "m1", "t1")


# ---------------------------------------------------------------------- reports (§4.1)
def test_vmm_report_generation_guard(ds: Datastore) -> None:
    _running(ds)
    res = ds.vmm_and_migration_update_runtime("v1", VmmRuntime(VmmState.STOPPING, 3, now()))
    assert res.vmm_updated
    stale = ds.vmm_and_migration_update_runtime("v1", VmmRuntime(VmmState.RUNNING, 2, now()))
    same = ds.vmm_and_migration_update_runtime("v1", VmmRuntime(VmmState.RUNNING, 3, now()))
    assert not stale.vmm_updated and not same.vmm_updated
    vmm = ds.vmm_fetch("v1")
    assert vmm is not None and vmm.state == VmmState.STOPPING


def test_mutant_reports_ignore_generation(make_ds: MakeDs) -> None:
    ds = make_ds(mutants=("reports-ignore-generation",))
    _running(ds)
    ds.vmm_and_migration_update_runtime("v1", VmmRuntime(VmmState.STOPPING, 3, now()))
    assert ds.vmm_and_migration_update_runtime("v1", VmmRuntime(VmmState.RUNNING, 2, now())).vmm_updated
    vmm = ds.vmm_fetch("v1")
    assert vmm is not None and vmm.state == VmmState.RUNNING  # rolled back (R14)


def test_migration_sides_matched_by_propolis_id(ds: Datastore) -> None:
    _running(ds)
    ds.vmm_insert("t1", "i1", "sled-1", "fd00::2", VmmState.MIGRATING)
    ds.migration_insert("m1", "i1", "v1", "t1")
    t = now()
    res = ds.vmm_and_migration_update_runtime(
        "v1", VmmRuntime(VmmState.MIGRATING, 3, t), migration_out=MigrationRuntime("m1", MigrationState.IN_PROGRESS, 2, t)
    )
    assert res.vmm_updated and res.migration_out_updated and not res.migration_in_updated
    # the source claims to be the target side: rejected, and the whole transaction rolls back
    with pytest.raises(InternalError):
        ds.vmm_and_migration_update_runtime(
            "v1", VmmRuntime(VmmState.RUNNING, 4, t), migration_in=MigrationRuntime("m1", MigrationState.COMPLETED, 5, t)
        )
    vmm = ds.vmm_fetch("v1")
    assert vmm is not None and vmm.state_generation == 3
    stale = ds.vmm_and_migration_update_runtime(
        "v1", VmmRuntime(VmmState.MIGRATING, 3, t), migration_out=MigrationRuntime("m1", MigrationState.FAILED, 2, t)
    )
    assert not stale.migration_out_updated
    with pytest.raises(BadRequest):
        ds.vmm_and_migration_update_runtime(
            "v1",
            VmmRuntime(VmmState.MIGRATING, 9, t),
            migration_in=MigrationRuntime("m1", MigrationState.FAILED, 9, t),
            migration_out=MigrationRuntime("m1", MigrationState.FAILED, 9, t),
        )


def test_report_for_deleted_migration_is_gone(ds: Datastore) -> None:
    _stopped(ds)
    ds.migration_insert("m1", "i1", "v1", "t1")
    ds.vmm_insert("v1", "i1", "sled-0", "fd00::1", VmmState.RUNNING)
    ds.project_delete_instance("i1")
    t = now()
    with pytest.raises(NotFound):
        ds.vmm_and_migration_update_runtime(
            "v1", VmmRuntime(VmmState.DESTROYED, 5, t), migration_out=MigrationRuntime("m1", MigrationState.FAILED, 3, t)
        )


# ---------------------------------------------------------------------- provisioning (§1.4)
def test_charge_and_release_are_idempotent(ds: Datastore) -> None:
    _stopped(ds)
    assert ds.virtual_provisioning_collection_insert_instance("i1", 2, 1024)
    assert not ds.virtual_provisioning_collection_insert_instance("i1", 2, 1024)
    assert ds.provisioning_counters()["project"] == (2, 1024)
    assert ds.virtual_provisioning_collection_delete_instance("i1", 2, 1024)
    assert not ds.virtual_provisioning_collection_delete_instance("i1", 2, 1024)
    assert set(ds.provisioning_counters().values()) == {(0, 0)}


def test_release_needs_instance_row(ds: Datastore) -> None:
    assert ds.virtual_provisioning_collection_insert_instance("ghost", 1, 1)
    assert not ds.virtual_provisioning_collection_delete_instance("ghost", 1, 1)
    assert ds.provisioning_counters()["fleet"] == (1, 1)
    _stopped(ds)
    ds.virtual_provisioning_collection_insert_instance("i1", 2, 2)
    ds.project_delete_instance("i1")  # soft delete still counts as existing
    assert ds.virtual_provisioning_collection_delete_instance("i1", 2, 2)


def test_mutant_release_not_idempotent(make_ds: MakeDs) -> None:
    ds = make_ds(mutants=("release-not-idempotent",))
    _stopped(ds)
    ds.virtual_provisioning_collection_insert_instance("i1", 2, 1024)
    ds.virtual_provisioning_collection_delete_instance("i1", 2, 1024)
    ds.virtual_provisioning_collection_delete_instance("i1", 2, 1024)
    assert ds.provisioning_counters()["project"] == (-2, -1024)  # underflow (#5042)


# ---------------------------------------------------------------------- VMM records
@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_saga_unwound_marking(make_ds: MakeDs, revision: str) -> None:
    ds = make_ds(revision)
    _stopped(ds)
    ds.vmm_insert("v1", "i1", "sled-0", "fd00::1", VmmState.STARTING)
    ds.vmm_update_runtime("v1", VmmRuntime(VmmState.RUNNING, 2, now()))  # the sled moved the gen
    marked = ds.vmm_mark_saga_unwound("v1", 1)
    vmm = ds.vmm_fetch("v1")
    assert vmm is not None
    if revision == "baseline":
        assert not marked and vmm.state == VmmState.RUNNING  # guarded write is a no-op (G3)
    else:
        assert marked and vmm.state == VmmState.SAGA_UNWOUND and vmm.state_generation == 3


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_vmm_mark_deleted_states(make_ds: MakeDs, revision: str) -> None:
    ds = make_ds(revision)
    _stopped(ds)
    for vid, st in (("vu", VmmState.SAGA_UNWOUND), ("vf", VmmState.FAILED), ("vd", VmmState.DESTROYED), ("vr", VmmState.RUNNING)):
        ds.vmm_insert(vid, "i1", "sled-0", "fd00::1", st)
    assert ds.vmm_mark_deleted("vd") and ds.vmm_mark_deleted("vf")
    assert not ds.vmm_mark_deleted("vr")
    assert ds.vmm_mark_deleted("vu") is (revision == "rfd486")
    assert not ds.vmm_mark_deleted("vd")  # already deleted


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_vmm_list_abandoned(make_ds: MakeDs, revision: str) -> None:
    ds = make_ds(revision)
    _running(ds)
    ds.vmm_update_runtime("v1", VmmRuntime(VmmState.DESTROYED, 9, now()))  # still active: not abandoned
    ds.vmm_insert("u1", "i1", "sled-1", "fd00::2", VmmState.SAGA_UNWOUND)
    ds.vmm_insert("f1", "i1", "sled-1", "fd00::2", VmmState.FAILED)
    ids = {v.id for v in ds.vmm_list_abandoned()}
    assert ids == ({"u1", "f1"} if revision == "rfd486" else {"u1"})


def test_fetch_all_and_finders(ds: Datastore) -> None:
    _running(ds)
    ds.vmm_insert("t1", "i1", "sled-1", "fd00::2", VmmState.MIGRATING)
    ds.migration_insert("m1", "i1", "v1", "t1")
    ds.instance_set_migration_ids("i1", "v1", "m1", "t1")
    snap = ds.instance_fetch_all("i1")
    assert snap is not None and snap.active_vmm is not None and snap.target_vmm is not None
    assert snap.migration is not None and snap.migration.id == "m1"
    assert ds.find_instances_with_terminated_active_migrations() == []
    ds.migration_mark_failed("m1")
    assert ds.find_instances_with_terminated_active_migrations() == ["i1"]
    ds.vmm_update_runtime("v1", VmmRuntime(VmmState.DESTROYED, 9, now()))
    assert ds.find_instances_by_active_vmm_state(VmmState.DESTROYED) == ["i1"]
    ds.instance_updater_lock("i1", "L")
    assert ds.find_instances_by_active_vmm_state(VmmState.DESTROYED) == []
    ds.vmm_update_runtime("t1", VmmRuntime(VmmState.DESTROYED, 9, now()))
    assert ds.vmm_mark_deleted("t1")
    snap = ds.instance_fetch_all("i1")
    assert snap is not None and snap.target_vmm is None  # deleted VMMs do not join


def test_sled_reservation_idempotent(ds: Datastore) -> None:
    sled = ds.sled_reservation_create("v1", 4, 1024)
    assert ds.sled_reservation_create("v1", 4, 1024) == sled
    other = ds.sled_reservation_create("v2", 4, 1024)
    assert other != sled  # least-loaded placement
    assert ds.sled_reservation_delete("v1") and not ds.sled_reservation_delete("v1")
    assert ds.sled_reservations() == {"v2": other}


def test_saga_log_round_trip(ds: Datastore) -> None:
    ds.saga_create("s1", "instance-start", {"instance_id": "i1"}, "nexus-0")
    ds.saga_record_event("s1", "nexus-0", 0, "propolis_id", "started")
    ds.saga_record_event("s1", "nexus-0", 0, "propolis_id", "succeeded", {"output": "v1"})
    assert [e.event_type for e in ds.saga_events("s1")] == ["started", "succeeded"]
    assert [r.id for r in ds.saga_list(owner="nexus-0", unfinished=True)] == ["s1"]
    assert ds.saga_reassign("nexus-0", "nexus-1") == 1
    ds.saga_set_state("s1", "done")
    assert ds.saga_list(unfinished=True) == []


# ---------------------------------------------------------------------- effective state (§3)
def _inst(state: InstanceState, active: str | None = None, migration: str | None = None) -> InstanceRecord:
    t = datetime.now(UTC)
    return InstanceRecord("i", "i", "p", 1, 1, None, state, 2, t, active, None, migration, None, 1)


def _vmm(state: VmmState) -> VmmRecord:
    return VmmRecord("v", "i", "s", "ip", 1, None, state, 2, datetime.now(UTC))


@pytest.mark.parametrize(
    ("istate", "vstate", "migration", "baseline", "rfd486"),
    [
        (InstanceState.VMM, VmmState.RUNNING, "m", ExternalState.MIGRATING, ExternalState.MIGRATING),
        (InstanceState.VMM, VmmState.DESTROYED, "m", ExternalState.MIGRATING, ExternalState.MIGRATING),
        (InstanceState.VMM, VmmState.STOPPED, None, ExternalState.STOPPING, ExternalState.STOPPING),
        (InstanceState.VMM, VmmState.DESTROYED, None, ExternalState.STOPPING, ExternalState.STOPPING),
        (InstanceState.VMM, VmmState.SAGA_UNWOUND, None, ExternalState.STOPPED, ExternalState.FAILED),
        (InstanceState.VMM, VmmState.FAILED, None, ExternalState.FAILED, ExternalState.STOPPING),
        (InstanceState.VMM, VmmState.STARTING, None, ExternalState.STARTING, ExternalState.STARTING),
        (InstanceState.VMM, VmmState.CREATING, None, ExternalState.STARTING, ExternalState.STARTING),
        (InstanceState.VMM, VmmState.REBOOTING, None, ExternalState.REBOOTING, ExternalState.REBOOTING),
        (InstanceState.VMM, VmmState.STOPPING, None, ExternalState.STOPPING, ExternalState.STOPPING),
        (InstanceState.VMM, None, None, ExternalState.RUNNING, ExternalState.RUNNING),
        (InstanceState.NO_VMM, None, None, ExternalState.STOPPED, ExternalState.STOPPED),
        (InstanceState.CREATING, None, None, ExternalState.CREATING, ExternalState.CREATING),
        (InstanceState.FAILED, None, None, ExternalState.FAILED, ExternalState.FAILED),
        (InstanceState.DESTROYED, None, None, ExternalState.DESTROYED, ExternalState.DESTROYED),
    ],
)
def test_effective_state_table(
    istate: InstanceState, vstate: VmmState | None, migration: str | None, baseline: ExternalState, rfd486: ExternalState
) -> None:
    inst = _inst(istate, "v" if istate == InstanceState.VMM else None, migration)
    vmm = None if vstate is None else _vmm(vstate)
    assert determine_effective_state("baseline", inst, vmm) == baseline
    assert determine_effective_state("rfd486", inst, vmm) == rfd486
    for rev in ("baseline", "rfd486"):
        assert determine_effective_state(rev, inst, vmm) != ExternalState.LEAKED_SAGA_UNWOUND
