"""Background task `instance-watcher` (SPEC §4.9).

Pulls the state of every live VMM of a live instance from its sled-agent and feeds it to
`notify_instance_updated`. On 404 NO_SUCH_INSTANCE the baseline only counts it; Δ #6455 makes
up a `Failed` report at the DB generation + 1. Communication errors are only counted.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from impl.datastore.records import VmmRecord, VmmRuntime, now
from impl.errors import SledNoSuchInstance, SledUnavailable
from impl.sled_agent.report import SledVmmState
from model.vocab import VmmState

if TYPE_CHECKING:
    from impl.nexus.nexus import Nexus

NAME = "instance_watcher"


def activate(nexus: Nexus) -> Counter[str]:
    stats: Counter[str] = Counter()
    for vmm in nexus.datastore.vmm_list_for_watcher():
        poll_vmm(nexus, vmm, stats)
    return stats


def poll_vmm(nexus: Nexus, vmm: VmmRecord, stats: Counter[str]) -> None:
    """One VMM of the sweep: pull its state and feed it to `notify_instance_updated`."""
    ds = nexus.datastore
    try:
        rep = nexus.sled_call(vmm.sled_id, "instance_get_state", vmm.id)
    except SledNoSuchInstance:
        stats["no_such_instance"] += 1
        if ds.revision != "rfd486":
            return
        rep = SledVmmState(vmm.instance_id, vmm.id, VmmRuntime(VmmState.FAILED, vmm.state_generation + 1, now()))
    except SledUnavailable:
        stats["unreachable"] += 1
        return
    try:
        nexus.notify_instance_updated(rep)
        stats["ok"] += 1
    except Exception:  # noqa: BLE001 - recorded only, as the task does
        stats["notify_error"] += 1
