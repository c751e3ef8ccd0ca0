"""Background task `abandoned-vmm-reaper` (SPEC §4.8).

For each destroyable, undeleted VMM no instance references: delete its sled reservation, then
`vmm_mark_deleted` (which, at the baseline, never deletes a SagaUnwound VMM: gap G3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from impl.datastore.records import VmmRecord

if TYPE_CHECKING:
    from impl.nexus.nexus import Nexus

NAME = "abandoned_vmm_reaper"


def activate(nexus: Nexus) -> list[str]:
    return [vmm.id for vmm in nexus.datastore.vmm_list_abandoned() if reap_vmm(nexus, vmm)]


def reap_vmm(nexus: Nexus, vmm: VmmRecord) -> bool:
    """One VMM of the sweep: delete its sled reservation, then soft-delete it."""
    nexus.datastore.sled_reservation_delete(vmm.id)
    return nexus.datastore.vmm_mark_deleted(vmm.id)
