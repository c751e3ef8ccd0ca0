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
    # where the shortest counterexample starts: None for the default seeds, else an opt-in
    # seed (model/seeds.py OPT_IN_SEEDS); its length is pinned in tests/test_findings.py
    seed: str | None = None


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
    Finding("F2", "baseline", ("no_dangling_vmm_refs",),
            "a migrate saga unwinds after its target reported Destroyed: the baseline "
            "unwind_vmm_record's generation-guarded SagaUnwound write does nothing and "
            "vmm_mark_deleted deletes the Destroyed target, which target_propolis_id still "
            "names (SET_MIGRATION_IDS has no undo)", "§4.4 node 4 and 6, §7 G3, §6.19",
            "rfd486", seed="migration-race"),
    Finding("F3", "baseline", ("stopped_instance_has_no_vms",),
            "the migration source dies on its sled before SET_MIGRATION_IDS, which still "
            "matches (the database says Running); the report's update saga unlinks the "
            "source and commits NoVmm while the new migration's ids stay set",
            "§4.4 instance_set_migration_ids, §4.6 steps A and D, §6.2", None,
            seed="migration-race"),
    Finding("F4", "rfd486", ("update_saga_never_panics",),
            "a migration target vanishes from its sled (the watcher marks it Failed); the "
            "update saga read the migration still in progress, so step B clears "
            "target_propolis_id but migration_id stays; once the source reports Completed, "
            "the next UpdatesRequired (the chain after the commit, or any later update saga) "
            "finds a completed migration without its target VMM row and panics: Nexus aborts "
            "and aborts again on every recovery, the instance is never updated again",
            "§4.9 (#6455), §4.6 steps B and C", None),
    *[Finding("F5", rev, ("active_vms_have_resources",),
              "a start saga's VMM is destroyed after it charged; the update saga releases the "
              "charge and stops the instance; the user starts it again and the new start "
              "charges; then the old saga's ENSURE_RUNNING fails and its undo of "
              "ADD_VIRTUAL_RESOURCES deletes the charge by instance id: the new start's",
              "§4.2 node 9, §1.4, §7 R9, §6.16", None, seed="start-outlived")
      for rev in ("baseline", "rfd486")],
]


def in_scope(f: Finding, seeds: list[str] | None, depth: int, default_depth: int) -> bool:
    """Whether a check from `seeds` (None: the default seeds) to `depth` can meet the finding.
    A finding pinned from an opt-in seed is not met from the default seeds within the
    default depth (tests/test_findings.py checks that), but may be deeper."""
    if f.seed is None:
        return True  # shallow, and met from the opt-in seeds as well
    if seeds is not None and f.seed in seeds:
        return True
    defaults = seeds is None or bool(set(seeds) - opt_in_names())
    return defaults and depth > default_depth


def opt_in_names() -> set[str]:
    from .seeds import OPT_IN_SEEDS

    return set(OPT_IN_SEEDS)


def findings_for(revision: str, seeds: list[str] | None = None, depth: int | None = None,
                 default_depth: int = 8) -> dict[str, Finding]:
    """invariant id -> the finding that explains its violation on this revision; with a
    `depth`, only findings a check from `seeds` to that depth can meet (`in_scope`)."""
    out: dict[str, Finding] = {}
    for f in FINDINGS:
        if f.revision == revision and (depth is None
                                       or in_scope(f, seeds, depth, default_depth)):
            for inv in f.invariants:
                out[inv] = f
    return out
