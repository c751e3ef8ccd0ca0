"""Opt-in recording of a database-level history for `lifecycle validate` (docs/history-validation.md).

`HistoryRecorder(path).attach(datastore)` makes every transaction of that datastore, just
before it commits, read the lifecycle records of every instance (instance row, VMM rows,
migration rows, sled reservations, provisioning rows) and append one JSON line per instance
whose records that transaction changed:

    {"seq": 17, "instance": "<uuid>", "label": "instance-update.COMMIT_INSTANCE_UPDATES",
     "key": "<saga id>/COMMIT_INSTANCE_UPDATES/forward#1",
     "changes": {...}}

`label` is the model action name the write belongs to, found by looking at the call stack
(the saga node being executed, the API call, the report push, the background task), or
several names separated by `|` when the write may be either; `key`
identifies one execution of that action, so that the validator can join several transactions
of one model step (e.g. DESTROY_ACTIVE_VMM's two implementation nodes); a saga node's key
ends in `#n`, the group's execution number (a node re-executed after a crash is a new
execution, `Executions`). An instance's first event carries all its `records` (format:
`records_of` below), later ones only the `changes` (`changes` below). While recording,
transactions are serialized process-wide on every engine (SQLite already is), so the line
order is the commit order.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from types import FrameType
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from impl.datastore import schema
from impl.datastore.enums import instance_state, migration_state, vmm_state
from model.vocab import InstanceState

FORMAT = "lifecycle-history/1"

Records = dict[str, Any]


def records_of(conn: Connection, owners: dict[str, str]) -> dict[str, Records]:
    """Every instance's lifecycle records, as JSON-ready values keyed by instance id.

    `instance`: [state, generation, active, target, migration, updater, updater_gen] with
    state as the number of `model.vocab.InstanceState` (Destroyed once `time_deleted` is set);
    `vmms`: id -> [state, generation, deleted, reserved]; `migrations`: id -> [source,
    target, source_state, source_gen, target_state, target_gen, deleted]; `prov_row`: a
    provisioning resource row exists; `reservations`: ids of sled reservations without a VMM
    row, attributed to an instance through `owners` (reservation id -> instance id).
    """
    out: dict[str, Records] = {}
    for r in conn.execute(select(schema.instance)):
        m = r._mapping
        st = InstanceState.DESTROYED if m["time_deleted"] is not None else instance_state(m["state"])
        out[m["id"]] = {
            "instance": [int(st), m["state_generation"], m["active_propolis_id"],
                         m["target_propolis_id"], m["migration_id"], m["updater_id"],
                         m["updater_gen"]],
            "vmms": {}, "migrations": {}, "prov_row": False, "reservations": [],
        }
    reserved = {r[0] for r in conn.execute(select(schema.sled_resource.c.id))}
    rowless = set(reserved)
    for r in conn.execute(select(schema.vmm)):
        m = r._mapping
        rowless.discard(m["id"])
        rec = out.get(m["instance_id"])
        if rec is not None:
            rec["vmms"][m["id"]] = [int(vmm_state(m["state"])), m["state_generation"],
                                    m["time_deleted"] is not None, m["id"] in reserved]
    for vid in sorted(rowless):  # a reservation made before its VMM row (start ALLOC_SERVER, ...)
        iid = owners.get(vid)
        if iid in out:
            out[iid]["reservations"].append(vid)
    for r in conn.execute(select(schema.migration)):
        m = r._mapping
        rec = out.get(m["instance_id"])
        if rec is not None:
            rec["migrations"][m["id"]] = [
                m["source_propolis_id"], m["target_propolis_id"],
                int(migration_state(m["source_state"])), m["source_gen"],
                int(migration_state(m["target_state"])), m["target_gen"],
                m["time_deleted"] is not None]
    for r in conn.execute(select(schema.virtual_provisioning_resource.c.id)):
        if r[0] in out:
            out[r[0]]["prov_row"] = True
    return out


def changes(prev: Records, now: Records) -> Records:
    """`now` as a change to `prev`: the instance row, `prov_row` and `reservations` in full;
    of `vmms` and `migrations` only the records that changed (null: the row is gone)."""
    out: Records = {"instance": now["instance"], "prov_row": now["prov_row"],
                    "reservations": now["reservations"]}
    for table in ("vmms", "migrations"):
        a, b = prev[table], now[table]
        delta: dict[str, Any] = {k: v for k, v in b.items() if a.get(k) != v}
        delta.update({k: None for k in a if k not in b})
        out[table] = delta
    return out


# Where a write comes from: (file name ending, function name) -> model action name. A saga
# node frame (innermost) wins; otherwise the outermost of these frames names the action.
_ENTRY_POINTS: dict[tuple[str, str], str] = {
    ("nexus.py", "cpapi_instances_put"): "sled-agent.deliver_report",
    ("instance_watcher.py", "poll_vmm"): "instance-watcher",
    ("abandoned_vmm_reaper.py", "reap_vmm"): "abandoned-vmm-reaper.reap",
}


class Executions:
    """Numbers the executions of each saga node group, so that a key names one execution.

    A model node stands for a group of implementation nodes (conformance/nodes.py), run one
    `_step_forward` / `_step_undo` call each, in index order (undos in reverse). Calls that
    continue the group's order (the next member, or the `finish` of a member that waited for
    a child saga) belong to the same execution, as do several transactions of one call; a
    call that runs a member again (a node re-executed after a crash, SPEC "Saga semantics")
    starts a new execution: in the model that is a step of its own (e.g. a re-executed
    SET_MIGRATION_IDS bumps the generation once more, SPEC §4.4 (b)).
    """

    _ORDER = {"forward": 0, "finish": 1, "undo": 0}

    def __init__(self) -> None:
        # group key -> (the call's frame, member index, direction, execution number); the
        # frame is kept so that no later call can be mistaken for it (ids are reused)
        self._last: dict[str, tuple[FrameType, int, str, int]] = {}

    def number(self, group_key: str, frame: FrameType, idx: int, direction: str) -> int:
        last = self._last.get(group_key)
        if last is None:
            n = 1
        else:
            f0, i0, d0, n = last
            if f0 is not frame:
                undo = direction == "undo"
                later = (idx < i0 if undo else idx > i0) or (
                    idx == i0 and self._ORDER[direction] > self._ORDER[d0])
                if not later:
                    n += 1
        self._last[group_key] = (frame, idx, direction, n)
        return n


def _saga_label(frame: FrameType, executions: Executions | None
                ) -> tuple[str, str, str | None]:
    from conformance.nodes import group_of

    loc = frame.f_locals
    run, node = loc["run"], loc["node"]
    undo = frame.f_code.co_name == "_step_undo"
    group = group_of(run.name, node.name) or f"impl:{node.name}"
    label = f"{run.name}.{group}" + (".undo" if undo else "")
    key = f"{run.saga_id}/{group}/{'undo' if undo else 'forward'}"
    if executions is not None:
        direction = "undo" if undo else str(loc.get("direction", "forward"))
        key += f"#{executions.number(key, frame, int(loc['idx']), direction)}"
    return label, key, run.params.get("instance_id")


def current_action(executions: Executions | None = None) -> tuple[str, str, str | None]:
    """(model action name, execution key, instance id if known) of the calling thread's write;
    with `executions`, a saga node's key ends in `#n`, its group's execution number."""
    f: FrameType | None = sys._getframe(1)
    outer: tuple[str, str, str | None] | None = None
    outer_frame: FrameType | None = None
    answer = False  # the write applies a sled-agent answer (`notify_instance_updated`)
    while f is not None:
        name = f.f_code.co_name
        fname = f.f_code.co_filename
        if name == "notify_instance_updated" and fname.endswith("nexus.py"):
            answer = True
        if name in ("_step_forward", "_step_undo") and fname.endswith("saga_executor.py"):
            label, key, hint = _saga_label(f, executions)
            # A node that applies a sled's answer may carry news the model's node does not
            # apply (the sled moved on); in the model that news arrives as a report.
            return (f"{label}|sled-agent.deliver_report" if answer else label), key, hint
        if name == "_request_state" and fname.endswith("nexus.py"):
            outer = (f"user.instance_{f.f_locals['action']}", f"frame:{id(f)}", None)
            outer_frame = f
        else:
            for (suffix, fn), label in _ENTRY_POINTS.items():
                if name == fn and fname.endswith(suffix):
                    outer = (label, f"frame:{id(f)}", None)
                    outer_frame = f
        f = f.f_back
    if outer is None or outer_frame is None:
        return "unknown", "unknown", None
    _hold(outer_frame)
    return outer


_held: OrderedDict[int, FrameType] = OrderedDict()
_held_lock = threading.Lock()


def _hold(frame: FrameType) -> None:
    """Keep the last frames used as keys alive, so that no new call gets the same id (and
    key) while the validator could still join its events with theirs."""
    with _held_lock:
        _held[id(frame)] = frame
        _held.move_to_end(id(frame))
        while len(_held) > 256:
            _held.popitem(last=False)


class HistoryRecorder:
    """Appends one JSON line per (committed transaction, changed instance) to `path`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = threading.RLock()  # held by the datastore around every transaction
        self._last: dict[str, Records] = {}
        self._owners: dict[str, str] = {}  # reservation id -> instance whose saga made it
        self._seq = 0
        self._executions = Executions()
        self._out: IO[str] | None = None
        self.events = 0

    def attach(self, datastore: Any) -> HistoryRecorder:
        self._out = self.path.open("w")
        self._out.write(json.dumps({"format": FORMAT, "revision": datastore.revision,
                                    "mutants": sorted(datastore.config.mutants),
                                    "engine": datastore.dialect}) + "\n")
        datastore.history = self
        return self

    def detach(self, datastore: Any) -> None:
        datastore.history = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def after_write(self, conn: Connection) -> None:
        """Called inside every transaction, after its statements and before its commit."""
        if self._out is None:
            return
        label, key, hint = current_action(self._executions)
        if hint is not None:
            for (vid,) in conn.execute(select(schema.sled_resource.c.id)):
                self._owners.setdefault(vid, hint)
        now = records_of(conn, self._owners)
        changed = [iid for iid, rec in now.items() if self._last.get(iid) != rec]
        if not changed:
            return
        for iid in changed:
            self._seq += 1
            ev: dict[str, Any] = {"seq": self._seq, "instance": iid, "label": label, "key": key}
            prev = self._last.get(iid)
            if prev is None:
                ev["records"] = now[iid]
            else:
                ev["changes"] = changes(prev, now[iid])
            self._out.write(json.dumps(ev) + "\n")
            self._last[iid] = now[iid]
            self.events += 1
        self._out.flush()
