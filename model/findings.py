"""What the checker finds in the protocol itself: invariants the real code violates.

These are reported, never hidden: `lifecycle verify` shows them with their traces under the
status `finding`, and a finding that no longer reproduces is reported as stale. An invariant
with a finding on a revision cannot show whether a defect (mutant) is caught on that revision,
so mutant runs judge only the other invariants. docs/findings.md explains each one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    id: str
    revision: str
    invariants: tuple[str, ...]
    title: str
    spec: str
    fixed_in: str | None


FINDINGS: list[Finding] = [
    Finding("Q3", "baseline", ("no_charge_without_vmm", "no_charge_after_delete"),
            "mark_instance_failed unlinks the VMM but keeps the provisioning charge; deleting "
            "the Failed instance then leaks it", "§7 Q3, §4.10, #4226", "rfd486"),
    Finding("Q1", "baseline", ("target_implies_migration", "migration_requires_active_vm"),
            "mark_instance_failed during a migration keeps migration_id and target_propolis_id "
            "on a Failed instance", "§7 Q1, §6.2", "rfd486"),
    Finding("Q1b", "baseline", ("only_update_unlinks_dead_active",),
            "mark_instance_failed (a stop or reboot meeting an unhealthy sled) unlinks a "
            "Destroyed active VMM outside any update saga", "§6.5-6, §4.10", "rfd486"),
    Finding("G4", "baseline", ("failed_vmm_is_handled",),
            "an active VMM reported Failed starts no update saga and no sweep finds it: the "
            "instance stays Failed with its charge and reservation held", "§7 G4", "rfd486"),
    Finding("F1", "rfd486", ("target_implies_migration", "migration_requires_active_vm",
                             "stopped_instance_has_no_vms"),
            "the migration source vanishes from its sled mid-migration: the watcher's made-up "
            "Failed report carries no migration, so the update saga unlinks the source and "
            "commits Failed while migration_id and target_propolis_id stay set",
            "§4.9 (#6455), §4.6 steps A and D, §6.2", None),
]


def findings_for(revision: str) -> dict[str, Finding]:
    """invariant id -> the finding that explains its violation on this revision."""
    out: dict[str, Finding] = {}
    for f in FINDINGS:
        if f.revision == revision:
            for inv in f.invariants:
                out[inv] = f
    return out
