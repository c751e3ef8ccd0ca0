"""The effective (external) instance state, SPEC §3, for both revisions.

`determine_effective_state` is a pure function of the instance row and its active VMM (the
row joined on `vmm.id = active_propolis_id AND vmm.time_deleted IS NULL`). SagaUnwound never
leaks: it maps to Stopped (baseline) or Failed (Δ #6669).
"""

from __future__ import annotations

from impl.datastore.records import InstanceRecord, VmmRecord
from model.vocab import ExternalState, InstanceState, VmmState

_FROM_INSTANCE = {
    InstanceState.CREATING: ExternalState.CREATING,
    InstanceState.NO_VMM: ExternalState.STOPPED,
    InstanceState.VMM: ExternalState.RUNNING,
    InstanceState.FAILED: ExternalState.FAILED,
    InstanceState.DESTROYED: ExternalState.DESTROYED,
}

_FROM_VMM = {
    VmmState.CREATING: ExternalState.STARTING,
    VmmState.STARTING: ExternalState.STARTING,
    VmmState.RUNNING: ExternalState.RUNNING,
    VmmState.STOPPING: ExternalState.STOPPING,
    VmmState.STOPPED: ExternalState.STOPPED,
    VmmState.REBOOTING: ExternalState.REBOOTING,
    VmmState.MIGRATING: ExternalState.MIGRATING,
    VmmState.FAILED: ExternalState.FAILED,
    VmmState.DESTROYED: ExternalState.DESTROYED,
    VmmState.SAGA_UNWOUND: ExternalState.STOPPED,
}


def determine_effective_state(
    revision: str, instance: InstanceRecord, active_vmm: VmmRecord | None
) -> ExternalState:
    """Rules 1–6 of SPEC §3, top to bottom, first match wins."""
    st = instance.state
    if active_vmm is not None:
        vs = active_vmm.state
        if st == InstanceState.VMM and instance.migration_id is not None:  # rule 1
            return ExternalState.MIGRATING
        if st == InstanceState.VMM and vs in (VmmState.STOPPED, VmmState.DESTROYED):  # rule 2
            return ExternalState.STOPPING
        if st == InstanceState.VMM and vs == VmmState.SAGA_UNWOUND:  # rule 3
            return ExternalState.FAILED if revision == "rfd486" else ExternalState.STOPPED
        if st == InstanceState.VMM and vs == VmmState.FAILED and revision == "rfd486":  # rule 3b
            return ExternalState.STOPPING
        if st == InstanceState.NO_VMM:  # rule 4
            return ExternalState.STOPPED
        return _FROM_VMM[vs]  # rule 5
    if st == InstanceState.NO_VMM:  # rule 4
        return ExternalState.STOPPED
    return _FROM_INSTANCE[st]  # rule 6 (Vmm with no VMM row -> Running at the baseline)
