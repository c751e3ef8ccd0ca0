"""Reading a recorded history (impl/history.py's JSONL format) with precise complaints.

A history file is a header line `{"format": "lifecycle-history/1", "revision": ...,
"mutants": [...], "engine": ...}` followed by one event per line, carrying either all of the
instance's `records` or the `changes` since the instance's previous event (impl/history.py);
`load` gives every event its full records. `load` checks every line's
shape and raises `HistoryError` naming the line and what is wrong with it.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impl.history import FORMAT

INSTANCE_FIELDS = 7
VMM_FIELDS = 4
MIGRATION_FIELDS = 7


class HistoryError(ValueError):
    """The file is not a readable history (exit status 2)."""


@dataclass(slots=True)
class Event:  # read-only by convention (not frozen: a frozen dataclass is slow to build)
    seq: int
    instance: str
    label: str
    key: str
    records: dict[str, Any]  # every record of the instance after the event
    line: int
    changed: frozenset[str] | None = None  # VMM / migration ids the event changed (None: unknown)


@dataclass
class History:
    revision: str
    mutants: tuple[str, ...]
    engine: str
    events: list[Event]

    def by_instance(self) -> dict[str, list[Event]]:
        out: dict[str, list[Event]] = {}
        for e in self.events:
            out.setdefault(e.instance, []).append(e)
        return out


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_records(rec: Any, where: str) -> None:
    if not isinstance(rec, dict):
        raise HistoryError(f"{where}: `records` must be an object")
    for k in ("instance", "vmms", "migrations", "prov_row"):
        if k not in rec:
            raise HistoryError(f"{where}: `records` lacks `{k}`")
    for name, n in (("vmms", VMM_FIELDS), ("migrations", MIGRATION_FIELDS)):
        table = rec[name]
        if not isinstance(table, dict) or any(
                not isinstance(v, list) or len(v) != n for v in table.values()):
            raise HistoryError(f"{where}: `records.{name}` must map ids to lists of {n} values")
    _check_head(rec, where)


def _check_head(rec: dict[str, Any], where: str) -> None:
    """The instance row, `prov_row` and `reservations` of an event's records."""
    inst = rec["instance"]
    if not (isinstance(inst, list) and len(inst) == INSTANCE_FIELDS and _is_int(inst[0])
            and _is_int(inst[1]) and _is_int(inst[6])):
        raise HistoryError(f"{where}: `records.instance` must be [state, gen, active, target, "
                           "migration, updater, updater_gen] with integer state and generations")
    if not isinstance(rec["prov_row"], bool):
        raise HistoryError(f"{where}: `records.prov_row` must be true or false")
    if not isinstance(rec.get("reservations", []), list):
        raise HistoryError(f"{where}: `records.reservations` must be a list of ids")


def _apply(prev: dict[str, Any], delta: Any, where: str) -> tuple[dict[str, Any],
                                                                    frozenset[str]]:
    """The records after a `changes` event, and the ids of the records it changed."""
    if not isinstance(delta, dict) or not all(
            isinstance(delta.get(t), dict) for t in ("vmms", "migrations")):
        raise HistoryError(f"{where}: `changes` must be an object with `vmms` and `migrations` "
                           "objects")
    rec = {"instance": delta.get("instance"), "prov_row": delta.get("prov_row"),
           "reservations": delta.get("reservations", [])}
    for table, n in (("vmms", VMM_FIELDS), ("migrations", MIGRATION_FIELDS)):
        rows = dict(prev[table])
        for k, v in delta[table].items():
            if v is None:
                rows.pop(k, None)
            elif isinstance(v, list) and len(v) == n:
                rows[k] = v
            else:
                raise HistoryError(f"{where}: `changes.{table}` must map ids to lists of {n} "
                                   "values or null")
        rec[table] = rows
    _check_head(rec, where)
    return rec, frozenset(delta["vmms"]) | frozenset(delta["migrations"])


def _apply_fast(prev: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any] | None:
    """`_apply` for a well-formed `changes` object, or None (then `_apply` says what is
    wrong). Tables the event does not change are shared with the previous records, which
    nothing modifies."""
    dv, dm = delta.get("vmms"), delta.get("migrations")
    if type(dv) is not dict or type(dm) is not dict:
        return None
    inst, prov, res = delta.get("instance"), delta.get("prov_row"), delta.get("reservations", [])
    if not (type(inst) is list and len(inst) == INSTANCE_FIELDS and type(inst[0]) is int
            and type(inst[1]) is int and type(inst[6]) is int and type(prov) is bool
            and type(res) is list):
        return None
    rec = {"instance": inst, "prov_row": prov, "reservations": res}
    for table, d, n in (("vmms", dv, VMM_FIELDS), ("migrations", dm, MIGRATION_FIELDS)):
        if not d:
            rec[table] = prev[table]
            continue
        rows = dict(prev[table])
        for k, v in d.items():
            if v is None:
                rows.pop(k, None)
            elif type(v) is list and len(v) == n:
                rows[k] = v
            else:
                return None
        rec[table] = rows
    return rec


def _parse(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise HistoryError(f"{where}: not JSON ({e.msg} at column {e.colno})") from None


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a while: loading and validating build hundreds
    of thousands of small containers (none in a cycle), and every few hundred of them the
    collector would walk all that exist so far, which took about as long as the work.

    On the way out, `freeze` + `unfreeze` moves every object into the oldest generation
    without looking at it (the first young-generation collection would otherwise walk all
    that the pause created); they are looked at in the next full collection."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def load(path: str | Path) -> History:
    with gc_paused():
        return _load(path)


def _load(path: str | Path) -> History:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise HistoryError(f"{p}: cannot read ({e.strerror})") from None
    lines = text.splitlines()
    if not lines:
        raise HistoryError(f"{p}: empty file (expected a `{FORMAT}` header line)")
    head = _parse(lines[0], f"{p}:1")
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise HistoryError(f"{p}:1: not a history header (expected \"format\": \"{FORMAT}\")")
    body = [(no, line) for no, line in enumerate(lines[1:], start=2) if line.strip()]
    try:  # one parse for the whole file; line by line only to locate an error
        parsed = json.loads("[" + ",".join(line for _no, line in body) + "]")
        if len(parsed) != len(body):
            raise json.JSONDecodeError("line count", "", 0)
    except json.JSONDecodeError:
        parsed = [_parse(line, f"{p}:{no}") for no, line in body]
    events: list[Event] = []
    current: dict[str, dict[str, Any]] = {}  # instance -> its records so far
    last = 0
    for (no, _line), ev in zip(body, parsed, strict=True):
        # the common case, a well-formed `changes` event, checked inline (same checks as the
        # general path below, which also produces the messages)
        if type(ev) is dict:
            seq, iid, label, key, delta = (ev.get("seq"), ev.get("instance"), ev.get("label"),
                                           ev.get("key"), ev.get("changes"))
            if (type(seq) is int and type(iid) is str and type(label) is str
                    and type(key) is str and seq > last and type(delta) is dict):
                prev = current.get(iid)
                fast = _apply_fast(prev, delta) if prev is not None else None
                if fast is not None:
                    last = seq
                    current[iid] = fast
                    events.append(Event(seq, iid, label, key, fast, no,
                                        frozenset(delta["vmms"]).union(delta["migrations"])))
                    continue
        where = f"{p}:{no}"
        if not isinstance(ev, dict):
            raise HistoryError(f"{where}: an event must be a JSON object")
        for k, t in (("seq", int), ("instance", str), ("label", str), ("key", str)):
            if not isinstance(ev.get(k), t) or isinstance(ev.get(k), bool):
                raise HistoryError(f"{where}: `{k}` missing or not a {t.__name__}")
        if ev["seq"] <= last:
            raise HistoryError(f"{where}: seq {ev['seq']} does not increase (previous {last})")
        last = ev["seq"]
        iid = ev["instance"]
        delta = ev.get("changes")
        rec: dict[str, Any]
        if delta is None:
            rec = ev.get("records")  # type: ignore[assignment]  # checked on the next line
            _check_records(rec, where)
            changed = None
        else:
            prev = current.get(iid)
            if prev is None:
                raise HistoryError(f"{where}: `changes` for instance {iid} before its `records`")
            rec, changed = _apply(prev, delta, where)
        current[iid] = rec
        events.append(Event(ev["seq"], iid, ev["label"], ev["key"], rec, no, changed))
    return History(str(head.get("revision", "baseline")), tuple(head.get("mutants", [])),
                   str(head.get("engine", "?")), events)
