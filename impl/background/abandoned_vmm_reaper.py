"""Background task `abandoned-vmm-reaper` (SPEC §4.8).

For each destroyable, undeleted VMM no instance references: delete its sled reservation, then
`vmm_mark_deleted` (which, at the baseline, never deletes a SagaUnwound VMM: gap G3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from impl.nexus.nexus import Nexus

NAME = "abandoned_vmm_reaper"


def activate(nexus: Nexus) -> list[str]:
    ds = nexus.datastore
    reaped = []
    for vmm in ds.vmm_list_abandoned():
        ds.sled_reservation_delete(vmm.id)
        if ds.vmm_mark_deleted(vmm.id):
            reaped.append(vmm.id)
    return reaped
