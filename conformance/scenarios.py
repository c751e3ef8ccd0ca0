"""Hand-written traces (as action labels) that tests and the benchmark replay directly."""

from __future__ import annotations

START_NODES = ("ALLOC_SERVER", "CREATE_VMM_RECORD", "MARK_AS_STARTING", "DPD_ENSURE",
               "ENSURE_REGISTERED", "ADD_VIRTUAL_RESOURCES", "ENSURE_RUNNING")

# A report buffered while the VMM was Running arrives after the stop answer (VMM gen 4)
# reached the database: it is stale and must be ignored (the `reports-ignore-generation`
# defect applies it and rolls the VMM back to Running).
STALE_REPORT: list[str] = [
    "instance-create.MOVE_TO_STOPPED(outcome=ok)",
    "user.instance_start(saga=0, vmm=0)",
    *[f"instance-start.{n}(saga=0, outcome=ok)" for n in START_NODES],
    "sled-agent.vmm_transition(vmm=0, to=RUNNING)",
    "user.instance_stop(vmm=0, sled=ok, update=none)",
    "sled-agent.deliver_report(vmm=0, keep=0, update=none)",
]

MIGRATE_NODES = ("RESERVE_RESOURCES", "CREATE_VMM_RECORD", "CREATE_MIGRATION_RECORD",
                 "SET_MIGRATION_IDS", "ENSURE_DESTINATION_PROPOLIS", "INSTANCE_MIGRATE")

# The source side of a migration reports Completed before the target does; the update saga
# that runs then moves the instance to the target but keeps the migration ids until the target
# has completed too (the `clear-ids-on-source-completed` defect clears them at once).
SOURCE_COMPLETES_FIRST: list[str] = [
    "instance-create.MOVE_TO_STOPPED(outcome=ok)",
    "user.instance_start(saga=0, vmm=0)",
    *[f"instance-start.{n}(saga=0, outcome=ok)" for n in START_NODES],
    "sled-agent.vmm_transition(vmm=0, to=RUNNING)",
    "sled-agent.deliver_report(vmm=0, keep=0, update=none)",
    "user.instance_migrate(saga=0)",
    *[f"instance-migrate.{n}(saga=0, outcome=ok)" for n in MIGRATE_NODES],
    "sled-agent.deliver_report(vmm=1, keep=0, update=none)",
    "sled-agent.deliver_report(vmm=0, keep=0, update=none)",
    "sled-agent.migration_source_completes(migration=0)",
    "sled-agent.deliver_report(vmm=0, keep=0, update=started)",
    "start-instance-update.LOCK_INSTANCE(saga=0, outcome=ok)",
    "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA(saga=0, outcome=ok)",
    "instance-update.BECOME_UPDATER(saga=0, outcome=ok)",
    "instance-update.RECONCILE_RESOURCES(saga=0, outcome=ok)",
    "instance-update.COMMIT_INSTANCE_UPDATES(saga=0, outcome=ok)",
]

UPDATE_NODES = ("BECOME_UPDATER", "RECONCILE_RESOURCES", "COMMIT_INSTANCE_UPDATES",
                "DESTROY_ACTIVE_VMM")

# A running instance's VMM is destroyed; the report starts the update saga, which unlinks the
# VMM, releases provisioning and network, commits NoVmm and then destroys the VMM record.
VMM_DESTROYED_UPDATE: list[str] = [
    *SOURCE_COMPLETES_FIRST[:11],
    "sled-agent.vmm_transition(vmm=0, to=DESTROYED)",
    "sled-agent.deliver_report(vmm=0, keep=0, update=started)",
    "start-instance-update.LOCK_INSTANCE(saga=0, outcome=ok)",
    "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA(saga=0, outcome=ok)",
    *[f"instance-update.{n}(saga=0, outcome=ok)" for n in UPDATE_NODES],
]

# R6: Nexus crashes while the parent waits for its child; the parent's fetch runs again and
# starts a second child, which wins the lock and does the update.
SECOND_CHILD: list[str] = [
    *VMM_DESTROYED_UPDATE[:15],
    "nexus.crash_and_recover(nexus=0)",
    "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA(saga=0, outcome=ok)",
    *[f"instance-update.{n}(saga=1, outcome=ok)" for n in UPDATE_NODES],
]

# Two migrate requests accepted back to back; the second saga (slot 1, migration slot 1) wins
# SET_MIGRATION_IDS and migrates.
SECOND_MIGRATION: list[str] = [
    *SOURCE_COMPLETES_FIRST[:11],
    "user.instance_migrate(saga=0)",
    "user.instance_migrate(saga=1)",
    *[f"instance-migrate.{n}(saga=1, outcome=ok)" for n in MIGRATE_NODES],
    "sled-agent.migration_target_completes(migration=1)",
]

# A start saga unwinds after a migration moved the instance's generation: the VMM booted
# before ENSURE_RUNNING answered (docs/findings.md, "Observed"). rfd486 ends at
# MIGRATING/SAGA_UNWOUND, a pair the budgeted searches never reached; the baseline at
# MIGRATING/RUNNING with the reservation released (active_vms_have_resources, last step).
# Not in DIRECTED itself: adding it changed the walks, and with them which goals Z3 settles
# within its budget (docs/conformance.md). On rfd486 the directed RESTART_OVER_UNWOUND_VMM
# extends it.
START_UNWINDS_UNDER_MIGRATION = [
    "instance-create.MOVE_TO_STOPPED(outcome=ok)", "user.instance_start(saga=0, vmm=0)"] + [
    f"instance-start.{n}(saga=0, outcome=ok)" for n in START_NODES[:6]] + [
    "sled-agent.vmm_transition(vmm=0, to=RUNNING)",
    "sled-agent.deliver_report(vmm=0, keep=0, update=none)",
    "user.instance_migrate(saga=0)"] + [
    f"instance-migrate.{n}(saga=0, outcome=ok)" for n in MIGRATE_NODES[:4]] + [
    "instance-start.ENSURE_RUNNING(saga=0, outcome=fail)"] + [
    f"instance-start.{n}.undo(saga=0, outcome=undo)" for n in reversed(START_NODES[:6])]


def _update_to_commit(saga: int, commit: str = "ok") -> list[str]:
    """Update saga `saga` locks, computes its update, becomes the updater, reconciles and
    commits with outcome `commit` (`crash`: Nexus crashes right after the commit took effect,
    and the node re-runs later)."""
    return [f"start-instance-update.LOCK_INSTANCE(saga={saga}, outcome=ok)",
            f"start-instance-update.FETCH_STATE_AND_START_REAL_SAGA(saga={saga}, outcome=ok)",
            *[f"instance-update.{n}(saga={saga}, outcome=ok)" for n in UPDATE_NODES[:2]],
            f"instance-update.COMMIT_INSTANCE_UPDATES(saga={saga}, outcome={commit})"]


# The baseline pair MIGRATING/STARTING, which no budgeted search reached, lies 10 steps past
# the 21st state of the path above (found there by Z3 with no budget, in 64 s; stored so
# that generation does not repeat that search). The unwound VMM's Destroyed report starts an
# update saga whose commit writes NoVmm while the migration ids stay (the invariants of
# finding F1 break at that step); a second start saga is then accepted, and its
# MARK_AS_STARTING links a new VMM while the instance still names the migration. The path
# stops one step short: the last pass finds that step itself. Not a path of rfd486 (its
# unwound VMM is SagaUnwound, and the report at step 22 is refused).
RESTART_UNDER_STALE_MIGRATION = [
    *START_UNWINDS_UNDER_MIGRATION[:21],
    "sled-agent.deliver_report(vmm=0, keep=0, update=started)",
    *_update_to_commit(0, "crash"),
    "user.instance_start(saga=1, vmm=2)",
    "instance-start.ALLOC_SERVER(saga=1, outcome=ok)",
    "instance-start.CREATE_VMM_RECORD(saga=1, outcome=ok)",
]

# The baseline pair STOPPED/SAGA_UNWOUND (an active VMM left SagaUnwound under a Vmm row),
# which no search reached, found by hand from the path above (docs/conformance.md, "Two more
# stored paths"). The second start saga has linked its VMM (MIGRATING/STARTING:
# the stale migration ids are still there); the migration then fails, and the updater's
# commit clears the ids and moves the generation. The start saga fails at DPD_ENSURE: the
# undo of MARK_AS_STARTING misses its generation and leaves the instance as it is, and the
# undo of CREATE_VMM_RECORD marks the still-active VMM SagaUnwound (it never had a report,
# so its generation is still 1). The path stops one step short; the last pass finds that
# step. Not a path of rfd486 (it extends RESTART_UNDER_STALE_MIGRATION).
UNWOUND_VMM_LEFT_ACTIVE = [
    *RESTART_UNDER_STALE_MIGRATION,
    "instance-start.MARK_AS_STARTING(saga=1, outcome=ok)",
    "instance-migrate.ENSURE_DESTINATION_PROPOLIS(saga=0, outcome=fail)",
    "instance-migrate.CREATE_MIGRATION_RECORD.undo(saga=0, outcome=undo)",
    "instance-updater.activate",
    *_update_to_commit(1),
    "instance-start.DPD_ENSURE(saga=1, outcome=fail)",
    "instance-start.MARK_AS_STARTING.undo(saga=1, outcome=undo)",
]

# The rfd486 pair MIGRATING/STARTING, which no budgeted search reached, lies 2 steps past the
# end of a path the last pass finds from START_UNWINDS_UNDER_MIGRATION (its trace ends at
# MIGRATING/CREATING; stored here so that generation does not depend on finding it first).
# The instance-watcher finds the unwound start saga's VMM gone and marks it Failed; the update
# saga's commit writes NoVmm and keeps the migration ids; a second start saga links a new
# VMM under them, and its registration moves that VMM to Starting. The path stops one step
# short; the last pass finds that step. It is also a path of the baseline (reaching
# MIGRATING/STARTING at its MARK_AS_STARTING step), but the baseline reaches that pair
# already, so the last pass searches from it on rfd486 only (`LAST_RESORT_ONLY`).
RESTART_AFTER_WATCHER = [
    *START_UNWINDS_UNDER_MIGRATION[:18],
    "instance-watcher.poll(vmm=0, update=started)",
    *_update_to_commit(0, "crash"),
    "user.instance_start(saga=1, vmm=2)",
    *[f"instance-start.{n}(saga=1, outcome=ok)" for n in START_NODES[:4]],
]

# Two start requests accepted back to back (both see the instance Stopped): the first saga's
# MARK_AS_STARTING links its VMM; the second's finds an active VMM that is not SagaUnwound,
# fails on its own verdict (Conflict) and unwinds, marking its own VMM SagaUnwound.
START_RACE = [
    "instance-create.MOVE_TO_STOPPED(outcome=ok)",
    "user.instance_start(saga=0, vmm=0)",
    "user.instance_start(saga=1, vmm=1)",
    *[f"instance-start.{n}(saga=0, outcome=ok)" for n in START_NODES[:3]],
    *[f"instance-start.{n}(saga=1, outcome=ok)" for n in START_NODES[:3]],
    *[f"instance-start.{n}.undo(saga=1, outcome=undo)" for n in reversed(START_NODES[:2])],
]

# What SagaUnwound is for (#5749): an instance whose start saga unwound can be started again,
# and the new start saga's MARK_AS_STARTING takes over the slot of the unwound VMM, which the
# reaper then collects. rfd486 only: there the unwound VMM of START_UNWINDS_UNDER_MIGRATION is
# SagaUnwound (the baseline's stays Running). The migration then fails and the updater clears
# it (FAILED/SAGA_UNWOUND); a start is accepted from Failed, runs to its end, and the reaper
# soft-deletes both unwound VMMs (the start saga's and the migration target).
RESTART_OVER_UNWOUND_VMM = [
    *START_UNWINDS_UNDER_MIGRATION,
    "instance-migrate.ENSURE_DESTINATION_PROPOLIS(saga=0, outcome=fail)",
    *[f"instance-migrate.{n}.undo(saga=0, outcome=undo)" for n in reversed(MIGRATE_NODES[:3])],
    "instance-updater.activate",
    *_update_to_commit(0),
    "user.instance_start(saga=0, vmm=2)",
    *[f"instance-start.{n}(saga=0, outcome=ok)" for n in START_NODES],
    "abandoned-vmm-reaper.reap(vmm=0)",
    "abandoned-vmm-reaper.reap(vmm=1)",
]

# Opt-in fault class `stuck_undos` only (not in any generated suite): the start saga fails
# at ADD_VIRTUAL_RESOURCES, and the undo of ENSURE_REGISTERED meets an unhealthy sled, so the
# saga is stuck (SPEC "Saga semantics", §4.2 node 8; tests/test_stuck_undo.py).
START_UNDO_UNHEALTHY: list[str] = [
    "instance-create.MOVE_TO_STOPPED(outcome=ok)", "user.instance_start(saga=0, vmm=0)",
    *[f"instance-start.{n}(saga=0, outcome=ok)" for n in START_NODES[:5]],
    "instance-start.ADD_VIRTUAL_RESOURCES(saga=0, outcome=fail)",
    "instance-start.ENSURE_REGISTERED.undo(saga=0, outcome=undo-unhealthy)",
]

# Paths of the opt-in fault classes (`model.state.Config` flags), which the generated suites
# (default fault model) never contain; `lifecycle conformance` replays each on every revision.
# Each entry: the path and the `Config` flag it needs.
OPT_IN: dict[str, tuple[list[str], str]] = {
    "start-undo-unhealthy": (START_UNDO_UNHEALTHY, "stuck_undos"),
}

# Hand-written paths from whose states generation searches last, only for the goals every
# other search left undecided (so they change no walk and no earlier budget). A trace found
# this way is shortest given its hand-written prefix, not overall.
LAST_RESORT: dict[str, list[str]] = {
    "start-unwinds-under-migration": START_UNWINDS_UNDER_MIGRATION,
    "restart-under-stale-migration": RESTART_UNDER_STALE_MIGRATION,
    "unwound-vmm-left-active": UNWOUND_VMM_LEFT_ACTIVE,
    "restart-after-watcher": RESTART_AFTER_WATCHER,
}
# Paths of `LAST_RESORT` searched from on one revision only (on the others they add starts,
# and so search time, for goals already settled).
LAST_RESORT_ONLY: dict[str, str] = {"restart-after-watcher": "rfd486"}

# Directed traces the generator always includes (they reach what random walks rarely do).
DIRECTED: dict[str, list[str]] = {
    "stale-report": STALE_REPORT,
    "source-completes-first": SOURCE_COMPLETES_FIRST,
    "vmm-destroyed-update": VMM_DESTROYED_UPDATE,
    "second-child": SECOND_CHILD,
    "second-migration": SECOND_MIGRATION,
    "start-race": START_RACE,
    "restart-over-unwound-vmm": RESTART_OVER_UNWOUND_VMM,
}
# Paths of `DIRECTED` that are paths of one revision only (the others leave them out).
DIRECTED_ONLY: dict[str, str] = {"restart-over-unwound-vmm": "rfd486"}
