"""The protocol's shared vocabulary: state enums, revision names and defect names.

Everything else in the project (the model, the implementation, the conformance suite and the
diagrams) speaks in these words. The numeric values are the model's encoding; the
implementation stores the names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class InstanceState(IntEnum):
    """The database `instance_state_v2` enum (SPEC §2.2)."""

    CREATING = 0
    NO_VMM = 1
    VMM = 2
    FAILED = 3
    DESTROYED = 4


class VmmState(IntEnum):
    """The database `vmm_state` enum (SPEC §2.1). `CREATING` exists only in rfd486.

    `GONE` is not a database value: the model uses it only for a sled-agent's own view of a
    VMM it has lost (the watcher then gets 404 NO_SUCH_INSTANCE). `ABSENT` marks a VMM slot
    that has no row (DB view) or that was never registered (sled view).
    """

    ABSENT = 0
    CREATING = 1
    STARTING = 2
    RUNNING = 3
    STOPPING = 4
    STOPPED = 5
    REBOOTING = 6
    MIGRATING = 7
    FAILED = 8
    DESTROYED = 9
    SAGA_UNWOUND = 10
    GONE = 11


class ExternalState(IntEnum):
    """The external API `InstanceState` (SPEC §2.3).

    `LEAKED_SAGA_UNWOUND` is not an external state: the effective-state function would return
    it only if an internal `SagaUnwound` value reached the API unmapped. Invariant
    `saga_unwound_never_visible` proves that never happens.
    """

    CREATING = 0
    STARTING = 1
    RUNNING = 2
    STOPPING = 3
    STOPPED = 4
    REBOOTING = 5
    MIGRATING = 6
    REPAIRING = 7
    FAILED = 8
    DESTROYED = 9
    LEAKED_SAGA_UNWOUND = 10


class MigrationState(IntEnum):
    """`MigrationState` (SPEC §2.4). `ABSENT` marks a migration slot with no row."""

    ABSENT = 0
    PENDING = 1
    IN_PROGRESS = 2
    FAILED = 3
    COMPLETED = 4


MIGRATION_TERMINAL = (MigrationState.FAILED, MigrationState.COMPLETED)

REVISIONS: dict[str, str] = {
    "baseline": "omicron at the PR #5749 merge (2024-08-09)",
    "rfd486": "baseline plus the September 2024 deltas #6455 and #6669 (RFD 486)",
}


def destroyable_states(revision: str) -> tuple[VmmState, ...]:
    """`DESTROYABLE_STATES`: VMM states whose sled resources may be released and reaped."""
    if revision == "baseline":
        return (VmmState.DESTROYED, VmmState.SAGA_UNWOUND)
    return (VmmState.DESTROYED, VmmState.FAILED, VmmState.SAGA_UNWOUND)


def mark_deleted_states(revision: str) -> tuple[VmmState, ...]:
    """States in which `vmm_mark_deleted` sets `time_deleted` (gap G3 at the baseline)."""
    if revision == "baseline":
        return (VmmState.DESTROYED, VmmState.FAILED)
    return destroyable_states(revision)


def update_terminal_states(revision: str) -> tuple[VmmState, ...]:
    """VMM states that `update_saga_needed` and `UpdatesRequired` treat as gone."""
    if revision == "baseline":
        return (VmmState.DESTROYED,)
    return (VmmState.DESTROYED, VmmState.FAILED)


@dataclass(frozen=True)
class Mutant:
    """A named defect: a real or plausible mistake that the checker must catch."""

    name: str
    summary: str
    race: str
    in_impl: bool


MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in (
        Mutant(
            "no-updater-lock",
            "update sagas skip the updater lock (no acquire, no inherit; commit ignores it)",
            "R1: provisioning released twice, a restarted instance's charge wiped",
            True,
        ),
        Mutant(
            "lock-in-runtime-state",
            "updater_id/updater_gen are written with every runtime-state write (#5831)",
            "a runtime write releases or reassigns a lock another saga holds",
            True,
        ),
        Mutant(
            "commit-ignores-generation",
            "the update commit does not check state_generation",
            "R3: a migrate or start saga's write is overwritten",
            True,
        ),
        Mutant(
            "unlock-ignores-holder",
            "unlock clears the lock whatever updater_id/updater_gen hold",
            "R7: an unwinding parent releases a lock now held by another saga",
            True,
        ),
        Mutant(
            "start-unwind-clears-unconditionally",
            "the start saga's MARK_AS_STARTING undo clears active_propolis_id without the gen check",
            "R9: an unwinding start erases a newer start's VMM",
            True,
        ),
        Mutant(
            "migrate-unwind-clears-ids",
            "the migrate saga's undo clears migration_id/target_propolis_id",
            "the reason SagaUnwound exists (#5848/#5855)",
            True,
        ),
        Mutant(
            "release-not-idempotent",
            "releasing provisioning decrements the counters even when no resource row exists",
            "counter underflow (#5042)",
            True,
        ),
        Mutant(
            "reports-ignore-generation",
            "sled-agent reports are applied whatever their generation",
            "R14: a stale report rolls a VMM back",
            True,
        ),
        Mutant(
            "clear-ids-on-source-completed",
            "migration ids are cleared when either side reports Completed",
            "invariant 24: a new migration starts before the target finished",
            True,
        ),
        Mutant(
            "delete-vmm-before-commit",
            "the destroy-VMM sub-saga runs before the commit that unlinks the VMM",
            "R15: the instance points at a deleted VMM",
            True,
        ),
        Mutant(
            "no-background-updater",
            "the instance-updater background task never runs",
            "R16: an update is lost and the instance stays Stopping/Migrating forever",
            False,
        ),
    )
}


class UsageError(ValueError):
    """A bad name or argument from the user; the message lists the valid choices."""


def check_revision(name: str) -> str:
    if name not in REVISIONS:
        raise UsageError(
            f"unknown revision {name!r}; valid revisions: {', '.join(sorted(REVISIONS))}"
        )
    return name


def check_mutants(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    bad = [n for n in names if n not in MUTANTS]
    if bad:
        raise UsageError(
            f"unknown mutant {', '.join(repr(b) for b in bad)}; valid mutants: "
            + ", ".join(sorted(MUTANTS))
        )
    return tuple(sorted(set(names)))
