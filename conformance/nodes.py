"""Correspondence between model saga nodes and implementation saga nodes.

The model leaves out nodes without a modelled effect and merges some consecutive nodes into
one step (docs/decisions.md, "Abstraction level"). Each model node therefore stands for a
*group* of implementation nodes, and some implementation nodes belong to no group: replay runs
those with outcome OK as soon as they are runnable (they draw ids or count activations only).
"""

from __future__ import annotations

# model variable prefix -> implementation saga name
SAGA_NAMES: dict[str, str] = {
    "cr": "instance-create",
    "st": "instance-start",
    "mg": "instance-migrate",
    "dl": "instance-delete",
    "up": "start-instance-update",
    "uc": "instance-update",
}
PREFIX_OF: dict[str, str] = {v: k for k, v in SAGA_NAMES.items()}

# implementation saga name -> {model node -> implementation nodes}
GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "instance-create": {
        "CREATE_INSTANCE_RECORD": ("create_instance_record",),
        "MOVE_TO_STOPPED": ("move_to_stopped",),
    },
    "instance-start": {
        "ALLOC_SERVER": ("sled_id",),
        "CREATE_VMM_RECORD": ("vmm_record",),
        "MARK_AS_STARTING": ("started_record",),
        "DPD_ENSURE": ("dpd_ensure",),
        "ENSURE_REGISTERED": ("ensure_registered",),
        "ADD_VIRTUAL_RESOURCES": ("add_virtual_resources",),
        "ENSURE_RUNNING": ("ensure_running",),
    },
    "instance-migrate": {
        "RESERVE_RESOURCES": ("dst_sled_id",),
        "CREATE_VMM_RECORD": ("dst_vmm_record",),
        "CREATE_MIGRATION_RECORD": ("migration_record",),
        "SET_MIGRATION_IDS": ("set_migration_ids",),
        "ENSURE_DESTINATION_PROPOLIS": ("ensure_destination_propolis",),
        "INSTANCE_MIGRATE": ("instance_migrate",),
    },
    "instance-delete": {
        "INSTANCE_DELETE_NAT": ("instance_delete_nat",),
        "INSTANCE_DELETE_RECORD": ("instance_delete_record",),
    },
    "start-instance-update": {
        "LOCK_INSTANCE": ("updater_lock",),
        "FETCH_STATE_AND_START_REAL_SAGA": ("fetch_state_and_start_real_saga",),
    },
    "instance-update": {
        "BECOME_UPDATER": ("updater_lock",),
        "RECONCILE_RESOURCES": (
            "update_network_config",
            "release_virtual_provisioning",
            "unassign_oximeter_producer",
        ),
        "COMMIT_INSTANCE_UPDATES": ("commit_instance_updates",),
        "DESTROY_ACTIVE_VMM": (
            "active_vmm_destroyed.release_sled_resources",
            "active_vmm_destroyed.mark_vmm_deleted",
        ),
        "DESTROY_TARGET_VMM": (
            "target_vmm_destroyed.release_sled_resources",
            "target_vmm_destroyed.mark_vmm_deleted",
        ),
    },
}

# implementation nodes the model leaves out: replay runs them (and their undos) with OK
UNMODELLED: dict[str, frozenset[str]] = {
    "instance-create": frozenset(),
    "instance-start": frozenset({"propolis_id", "propolis_ip", "v2p_ensure"}),
    "instance-migrate": frozenset({"migrate_id", "dst_propolis_id", "dst_propolis_ip"}),
    "instance-delete": frozenset({"delete_network_interfaces", "deallocate_external_ip"}),
    "start-instance-update": frozenset({"saga_instance_lock_id"}),
    "instance-update": frozenset({"saga_instance_lock_id"}),
}


def group_of(saga_name: str, impl_node: str) -> str | None:
    """The model node an implementation node belongs to (None: unmodelled)."""
    for model_node, members in GROUPS[saga_name].items():
        if impl_node in members:
            return model_node
    return None
