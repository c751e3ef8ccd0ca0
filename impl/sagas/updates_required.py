"""`UpdatesRequired::for_instance` (SPEC §4.6): a pure function of the locked snapshot.

Steps A–D exactly as the SPEC lists them. `SagaUnwound` VMMs are not matched by A/B.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from impl.datastore.records import InstanceRuntime, InstanceSnapshot, now
from impl.errors import NexusPanic
from model.vocab import InstanceState, MigrationState, VmmState, update_terminal_states


@dataclass(frozen=True)
class UpdatesRequired:
    new_runtime: InstanceRuntime
    destroy_active_vmm: str | None
    destroy_target_vmm: str | None
    deprovision: dict[str, Any] | None  # {project_id, ncpus, memory}
    network_config: dict[str, Any] | None  # {"kind": "delete"} | {"kind": "update", vmm_id, sled_id}

    def to_json(self) -> dict[str, Any]:
        return {
            "new_runtime": self.new_runtime.to_json(),
            "destroy_active_vmm": self.destroy_active_vmm,
            "destroy_target_vmm": self.destroy_target_vmm,
            "deprovision": self.deprovision,
            "network_config": self.network_config,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> UpdatesRequired:
        return UpdatesRequired(
            InstanceRuntime.from_json(d["new_runtime"]),
            d["destroy_active_vmm"],
            d["destroy_target_vmm"],
            d["deprovision"],
            d["network_config"],
        )


def updates_required(
    snap: InstanceSnapshot, revision: str, mutants: frozenset[str] = frozenset()
) -> UpdatesRequired | None:
    """Compute the update an instance needs, or None (SPEC §4.6 steps A–D)."""
    inst = snap.instance
    terminal = update_terminal_states(revision)
    propolis_id = inst.active_propolis_id
    dst_propolis_id = inst.target_propolis_id
    migration_id = inst.migration_id
    nexus_state = inst.state
    update_required = False
    network: dict[str, Any] | None = None
    deprovision: dict[str, Any] | None = None
    destroy_active: str | None = None
    destroy_target: str | None = None
    active_failed = False

    # Step A: the active VMM is gone.
    if snap.active_vmm is not None and snap.active_vmm.state in terminal:
        destroy_active = snap.active_vmm.id
        active_failed = snap.active_vmm.state == VmmState.FAILED
        propolis_id = None
        update_required = True
    # Step B: the migration target VMM is gone.
    if snap.target_vmm is not None and snap.target_vmm.state in terminal:
        destroy_target = snap.target_vmm.id
        dst_propolis_id = None
        update_required = True
    # Step C: the migration resolved.
    mig = snap.migration
    if mig is not None:
        if mig.either_side_failed():
            migration_id = None
            dst_propolis_id = None
            update_required = True
            if destroy_active is None and snap.active_vmm is not None:
                network = {"kind": "update", "vmm_id": snap.active_vmm.id, "sled_id": snap.active_vmm.sled_id}
        elif mig.either_side_completed():
            target = mig.target_propolis_id
            if propolis_id != target:
                if snap.target_vmm is None:
                    # omicron expects the target VMM row here and panics without it
                    raise NexusPanic(f"instance {inst.id}: migration {mig.id} completed but "
                                     "the snapshot has no target VMM")
                propolis_id = target
                network = {"kind": "update", "vmm_id": target, "sled_id": snap.target_vmm.sled_id}
                update_required = True
            if destroy_target is not None:
                propolis_id = None
                update_required = True
            target_done = mig.target_state == MigrationState.COMPLETED
            if target_done or "clear-ids-on-source-completed" in mutants:
                migration_id = None
                dst_propolis_id = None
                update_required = True
    # Step D: no active VMM left.
    if propolis_id is None:
        nexus_state = (
            InstanceState.FAILED if revision == "rfd486" and active_failed else InstanceState.NO_VMM
        )
        network = {"kind": "delete"}
        deprovision = {"project_id": inst.project_id, "ncpus": inst.ncpus, "memory": inst.memory}
    # Otherwise nexus_state stays what it was (SPEC §4.6): for a Failed instance whose
    # migration completed, the commit then breaks the CHECK constraint and fails, as in
    # omicron and the model (found by conformance replay).
    if not update_required:
        return None
    new = InstanceRuntime(
        nexus_state=nexus_state,
        gen=inst.state_generation + 1,
        propolis_id=propolis_id,
        dst_propolis_id=dst_propolis_id,
        migration_id=migration_id,
        time_updated=now(),
        read_updater_id=inst.updater_id,
        read_updater_gen=inst.updater_gen,
    )
    return UpdatesRequired(new, destroy_active, destroy_target, deprovision, network)
