"""Background task `instance-updater` (SPEC §4.7).

Finds unlocked instances whose active VMM is Destroyed (Δ #6455: or Failed) and unlocked
instances whose current migration has a terminal side, and starts a `start-instance-update`
saga for each without waiting for it to finish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.vocab import VmmState

if TYPE_CHECKING:
    from impl.nexus.nexus import Nexus

NAME = "instance_updater"


def activate(nexus: Nexus) -> list[str]:
    ds = nexus.datastore
    found: list[str] = []
    states = [VmmState.DESTROYED] + ([VmmState.FAILED] if ds.revision == "rfd486" else [])
    for st in states:
        found += ds.find_instances_by_active_vmm_state(st)
    found += ds.find_instances_with_terminated_active_migrations()
    sagas = []
    for iid in dict.fromkeys(found):
        sagas.append(nexus.start_saga("start-instance-update", {"instance_id": iid}))
    return sagas
