"""Per-saga fault injection, omicron style (SPEC §4, "Saga semantics", §5 crash cases).

For every node of every saga, in both revisions:

* `FAIL_BEFORE` / `FAIL_AFTER`: the saga unwinds; afterwards no lock is held (or only by the
  parent while it still runs), the instance record is consistent, and once everything settles
  no charge or reservation has leaked.
* `CRASH_AFTER`: the node's effect happens, the Nexus crashes and recovers on the same replica,
  and the node runs a second time (the idempotency check of `actions_succeed_idempotently`).
* `CRASH_BEFORE`: the Nexus crashes with the node started; another replica adopts the saga.

Crashes must end exactly where a fault-free run ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from conformance.impl_fixtures import (
    PG_SKIP_REASON,
    Fault,
    backend,
    controller,
    destroy_active_vmm_without_sagas,
    drive,
    pg_url,
    running_instance,
    stopped_instance,
)
from impl.controller import Controller
from impl.executor.dag import Outcome
from model.vocab import ExternalState


@dataclass(frozen=True)
class Case:
    saga: str
    nodes: tuple[str, ...]
    setup: Callable[[Controller], str]
    ok: ExternalState
    failed: frozenset[ExternalState | None]


def _create(c: Controller) -> str:
    iid, _ = c.create_instance("inst")
    return iid


def _start(c: Controller) -> str:
    iid = stopped_instance(c)
    assert c.start_instance(iid) is not None
    return iid


def _migrate(c: Controller) -> str:
    iid = running_instance(c)
    snap = c.snapshot(iid)
    assert snap is not None and snap.active_vmm is not None
    dst = next(s for s in c.fleet.sleds if s != snap.active_vmm.sled_id)
    c.migrate_instance(iid, dst)
    return iid


def _delete(c: Controller) -> str:
    iid = stopped_instance(c)
    c.delete_instance(iid)
    return iid


def _update(c: Controller) -> str:
    iid = running_instance(c)
    destroy_active_vmm_without_sagas(c, iid)
    assert any(s.saga_name == "start-instance-update" for s in c.runnable())
    return iid


S = ExternalState
CASES = [
    Case("instance-create", ("create_instance_record", "move_to_stopped"), _create, S.STOPPED,
         frozenset({S.DESTROYED, None})),
    Case("instance-start", ("propolis_id", "sled_id", "propolis_ip", "vmm_record", "started_record", "dpd_ensure",
                            "v2p_ensure", "ensure_registered", "add_virtual_resources", "ensure_running"),
         _start, S.RUNNING, frozenset({S.STOPPED})),
    Case("instance-migrate", ("migrate_id", "dst_propolis_id", "dst_sled_id", "dst_propolis_ip", "dst_vmm_record",
                              "migration_record", "set_migration_ids", "ensure_destination_propolis",
                              "instance_migrate"), _migrate, S.RUNNING, frozenset({S.RUNNING})),
    Case("instance-delete", ("instance_delete_nat", "instance_delete_record", "delete_network_interfaces",
                             "deallocate_external_ip"), _delete, S.DESTROYED, frozenset({S.STOPPED, S.DESTROYED})),
    Case("start-instance-update", ("saga_instance_lock_id", "updater_lock", "fetch_state_and_start_real_saga"),
         _update, S.STOPPED, frozenset({S.STOPPED})),
    Case("instance-update", ("saga_instance_lock_id", "updater_lock", "update_network_config",
                             "release_virtual_provisioning", "unassign_oximeter_producer", "commit_instance_updates",
                             "active_vmm_destroyed.release_sled_resources", "active_vmm_destroyed.mark_vmm_deleted"),
         _update, S.STOPPED, frozenset({S.STOPPED})),
]

# Nodes whose effect, when it happens and the node is still reported failed, is not undone
# (Steno undoes only succeeded nodes): a lock, charge, reservation or VMM row then leaks.
LEAKS_ON_FAIL_AFTER = {
    ("instance-create", "create_instance_record"),
    ("instance-start", "sled_id"),
    ("instance-start", "vmm_record"),
    ("instance-start", "ensure_registered"),
    ("instance-start", "add_virtual_resources"),
    ("instance-migrate", "dst_sled_id"),
    ("instance-migrate", "dst_vmm_record"),
    ("instance-migrate", "ensure_destination_propolis"),
    ("start-instance-update", "updater_lock"),
    ("instance-update", "updater_lock"),
    ("instance-start", "started_record"),
}

PARAMS = [
    pytest.param(case, node, outcome, rev, id=f"{rev}-{case.saga}-{node}-{outcome.value}")
    for rev in ("baseline", "rfd486")
    for case in CASES
    for node in case.nodes
    for outcome in (Outcome.FAIL_BEFORE, Outcome.FAIL_AFTER, Outcome.CRASH_BEFORE, Outcome.CRASH_AFTER)
    if not (outcome == Outcome.FAIL_AFTER and (case.saga, node) in LEAKS_ON_FAIL_AFTER)
]


@pytest.fixture
def sqlite_backend() -> Iterator[str]:
    yield "sqlite"


def _external(c: Controller, iid: str) -> ExternalState | None:
    return None if c.snapshot(iid) is None else c.external_state(iid)


def run_case(c: Controller, case: Case, node: str, outcome: Outcome) -> None:
    iid = case.setup(c)
    other = "nexus-1" if outcome == Outcome.CRASH_BEFORE else None
    fault = Fault(case.saga, node, outcome, recover_on=other)
    drive(c, fault)
    assert fault.fired, f"{case.saga} never reached {node}"
    # Right after the sagas stopped: no lock held, record consistent.
    snap = c.snapshot(iid)
    if snap is not None:
        assert snap.instance.updater_id is None, "lock held after the sagas finished"
    assert c.violations() == []
    c.settle()
    assert c.quiescent_violations() == []
    state = _external(c, iid)
    if outcome in (Outcome.CRASH_BEFORE, Outcome.CRASH_AFTER):
        assert state == case.ok
        if case.saga == "instance-migrate":
            snap = c.snapshot(iid)
            assert snap is not None and snap.active_vmm is not None and snap.active_vmm.sled_id != "sled-0"
    else:
        assert state in case.failed
    stuck = [s for s in c.datastore.saga_list() if s.state == "stuck"]
    assert stuck == []


@pytest.mark.parametrize(("case", "node", "outcome", "revision"), PARAMS)
def test_fault_at_every_node(case: Case, node: str, outcome: Outcome, revision: str) -> None:
    c = controller(backend("sqlite"), revision)
    try:
        run_case(c, case, node, outcome)
    finally:
        c.close()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("node", "outcome"),
    [(n, o) for n in CASES[1].nodes for o in (Outcome.FAIL_BEFORE, Outcome.CRASH_BEFORE, Outcome.CRASH_AFTER)],
)
def test_start_saga_faults_on_postgres(node: str, outcome: Outcome) -> None:
    if pg_url() is None:
        pytest.skip(PG_SKIP_REASON)
    c = controller(backend("postgres"), "rfd486")
    try:
        run_case(c, CASES[1], node, outcome)
    finally:
        c.close(drop_schema=True)


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
@pytest.mark.parametrize(("saga", "node"), sorted(LEAKS_ON_FAIL_AFTER))
def test_effect_then_failure_is_not_undone(saga: str, node: str, revision: str) -> None:
    """Steno undoes only succeeded nodes: an effect reported as failed stays (SPEC "Saga
    semantics"). For these nodes that leaves something behind for an operator or a later
    saga; this records the hazard rather than hiding it."""
    case = next(k for k in CASES if k.saga == saga)
    c = controller(backend("sqlite"), revision)
    try:
        case.setup(c)
        fault = Fault(saga, node, Outcome.FAIL_AFTER)
        drive(c, fault)
        assert fault.fired
        c.settle()
        db_live = {v.id for v in c.datastore.vmm_list()}
        leftovers = (
            c.quiescent_violations()
            + [v.id for v in c.datastore.vmm_list()]
            + [i.id for i in c.datastore.instance_list() if i.state.name == "CREATING"]
            + [v.vmm_id for v in c.fleet.live_vmms() if v.vmm_id not in db_live]
        )
        assert leftovers != []
    finally:
        c.close()


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_crash_in_every_start_undo(revision: str) -> None:
    """A crash while each undo of an unwinding start saga runs: the undo runs again."""
    undo_nodes = ("started_record", "vmm_record", "sled_id", "dpd_ensure", "v2p_ensure",
                  "ensure_registered", "add_virtual_resources")
    for undo_node in undo_nodes:
        for outcome in (Outcome.CRASH_BEFORE, Outcome.CRASH_AFTER):
            c = controller(backend("sqlite"), revision)
            try:
                iid = _start(c)
                fail = Fault("instance-start", "ensure_running", Outcome.FAIL_BEFORE)
                crash = Fault("instance-start", undo_node, outcome, direction="undo")
                for _ in range(500):
                    todo = c.runnable()
                    if not todo:
                        break
                    info = todo[0]
                    chosen = Outcome.OK
                    for f in (fail, crash):
                        if f.matches(info):
                            f.fired = True
                            chosen = f.outcome
                    if c.step(info.saga_id, chosen).event == "crashed":
                        c.recover_nexus(info.owner)
                assert fail.fired and crash.fired
                c.settle()
                assert c.quiescent_violations() == []
                assert c.external_state(iid) == ExternalState.STOPPED
            finally:
                c.close()
