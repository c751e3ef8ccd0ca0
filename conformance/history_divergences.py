"""Known differences between the implementation's recorded histories and the model.

Each entry says: under this revision (None: every revision), a step recorded as `label` that
no action of that name explains may instead be explained by `instead` (a `|`-separated list
of model action names), because the SPEC backs the implementation there and the model leaves
the case out. With `stale_guard`, `instead` is checked without its guard and with each write
done or not yet done: the implementation decided on an earlier read, in another transaction.
The validator tries an entry only after the step failed with its own label, and counts the
steps each entry explained; a step that none explains is still unexplained.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HistoryDivergence:
    name: str
    revision: str | None
    label: str
    instead: str
    why: str
    stale_guard: bool = False


HISTORY_DIVERGENCES: tuple[HistoryDivergence, ...] = (
    HistoryDivergence(
        "reaper-acts-on-stale-list", None, "abandoned-vmm-reaper.reap",
        "abandoned-vmm-reaper.reap",
        "SPEC §4.8: the reaper lists abandoned VMMs in one query and then deletes each one's "
        "reservation and soft-deletes it in later transactions; meanwhile another writer (e.g. "
        "an unwinding start saga's CREATE_VMM_RECORD undo) may have soft-deleted it. The "
        "model's reap lists and writes in one step, so its guard `not deleted` fails",
        stale_guard=True),
    HistoryDivergence(
        "fetch-unlocks-on-stale-snapshot", None,
        "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA",
        "start-instance-update.LOCK_INSTANCE.undo",
        "SPEC §4.6 node 3: instance_fetch_all reads the snapshot, UpdatesRequired finds "
        "nothing to do, then instance_updater_unlock runs as a separate query; a report "
        "(e.g. the active VMM Destroyed) may land in between, and its own update saga finds "
        "the lock still held, so the work falls to the instance-updater sweep. The model's "
        "node reads and unlocks in one step and, on the newer state, would start a child; the "
        "late write is the same holder-checked unlock as LOCK_INSTANCE's undo"),
    HistoryDivergence(
        "watcher-acts-on-stale-list", None, "instance-watcher", "sled-agent.deliver_report",
        "SPEC §4.9: the watcher lists VMMs joined with their non-deleted instances, then asks "
        "each sled and passes the answer (rfd486: the made-up Failed report) to "
        "notify_instance_updated in later transactions; the instance may be deleted in "
        "between. The model's poll lists and writes in one step (guard `instance not "
        "deleted`); the late write is the same guarded VMM write as a report's"),
    *(HistoryDivergence(
        f"{op}-answer-after-unlink", None, f"user.instance_{op}", "sled-agent.deliver_report",
        f"SPEC §4.3: {op} reads the instance and its active VMM, asks the sled, then passes the "
        "answer to notify_instance_updated, in separate transactions; an update saga may unlink "
        "the VMM in between. The model's request reads and writes in one step (guard `this is "
        "the active VMM`); the late write is the same guarded VMM write as a report's")
      for op in ("stop", "reboot")),
)


def alternatives(revision: str, label: str) -> list[HistoryDivergence]:
    return [d for d in HISTORY_DIVERGENCES
            if d.revision in (None, revision) and d.label in label.split("|")]
