"""From a recorded history to abstract steps over the model's observed variables.

Each instance's events become a sequence of steps (records before, records after, action
name). Consecutive events of one execution of one model action (same `key`: e.g. the two
implementation nodes of DESTROY_ACTIVE_VMM, or several transactions of one node) are joined
into one step. A node re-executed after a crash is a new execution (its key ends in the next
`#n`) and a step of its own, as in the model; histories recorded before keys had `#n` joined
it with the first execution (`legacy_join`, `splits`: the validator then also tries the
join's cuts into consecutive steps). (A model step the implementation splits into several
transactions can also be seen half done, with other writers in between: the validator
accepts such a step as a partial one, conformance/validate.py.)

Every step is abstracted on its own, with its own naming of records by model slot:

* VMM records that matter to the step get slots 0, 1, ... in the order the instance's history
  first shows them: those the instance row points at, those the step changes (a reservation
  without its VMM row counts as a record: start and migrate reserve before they insert) and
  those a relevant migration names. Other records are left out, and slots left over are
  pinned to "no record": no action's guard looks at a VMM the step neither names nor changes
  (the model's actions address VMMs by slot), except through `v_alloc`, which stays unknown.
* Migration records likewise: referenced by `migration_id`, or changed.
* Lock ids: NULL is 0, the others 1, 2, ... in order of appearance in the step.
* Generations above `GEN_SHIFT_ABOVE` are shifted down, per variable and by the same amount
  before and after, so that long runs fit the model's 6-bit generations; only differences
  within one variable are kept (the model never compares two observed generations).

The slot counts the model needs are the largest any step needs (at least the model's
defaults); `needed_bounds` computes them before the model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from model.state import NONE
from model.step import GEN_MAX
from model.vocab import MigrationState, VmmState

from .history_file import Event

GEN_SHIFT_ABOVE = 40
GEN_SHIFT_TO = 20

INSTANCE_OBS = ("i_state", "i_gen", "i_active", "i_target", "i_mig", "i_updater", "i_ugen",
                "prov_row")
VMM_OBS = ("v_state", "v_gen", "v_del", "v_res")
MIGRATION_OBS = ("m_src", "m_tgt", "m_src_st", "m_src_gen", "m_tgt_st", "m_tgt_gen", "m_del")
GEN_BASES = frozenset({"i_gen", "i_ugen", "v_gen", "m_src_gen", "m_tgt_gen"})

Obs = tuple[int | bool, ...]


@lru_cache(maxsize=8)
def observed_names(vmms: int, migrations: int) -> list[str]:
    """The model variables a step pins, in the order of the `Obs` tuples."""
    names = list(INSTANCE_OBS)
    for k in range(vmms):
        names += [f"{b}.{k}" for b in VMM_OBS]
    for m in range(migrations):
        names += [f"{b}.{m}" for b in MIGRATION_OBS]
    return names


Row = tuple[int, int, bool, bool]
ABSENT_VMM: Row = (int(VmmState.ABSENT), 0, False, False)
ABSENT_MIGRATION: tuple[int | bool, ...] = (NONE, NONE, int(MigrationState.ABSENT), 0,
                                            int(MigrationState.ABSENT), 0, False)


@dataclass(slots=True)
class Step:  # read-only by convention (not frozen: a frozen dataclass is slow to build)
    first: Event  # the first event of the joined group
    last: Event  # the event after which `post` holds
    pre: dict[str, Any]
    post: dict[str, Any]
    pre_rows: dict[str, Row]
    post_rows: dict[str, Row]
    vmms: list[str]  # the VMM records the step shows, in slot order
    migrations: list[str]  # likewise for migration records

    @property
    def label(self) -> str:
        return self.first.label


def vmm_rows(r: dict[str, Any]) -> dict[str, Row]:
    """VMM id -> (state, gen, deleted, reserved), with reservations that have no row yet."""
    rows: dict[str, Row] = r["vmms"]  # JSON lists; they compare and extend like tuples
    extra = r.get("reservations")
    if extra:
        rows = dict(rows)
        for vid in extra:
            rows.setdefault(vid, (int(VmmState.ABSENT), 0, False, True))
    return rows


def appearance_order(events: list[Event]) -> dict[str, int]:
    """Record id -> rank of its first appearance in the instance's history."""
    order: dict[str, int] = {}
    seen_v: object = None
    seen_m: object = None
    for e in events:
        r = e.records
        # a table an event did not change is the previous event's object (history_file),
        # whose ids are already ranked
        vmms, migs = r["vmms"], r["migrations"]
        if vmms is not seen_v:
            for vid in vmms:
                if vid not in order:
                    order[vid] = len(order)
            seen_v = vmms
        for vid in r.get("reservations", ()):
            if vid not in order:
                order[vid] = len(order)
        if migs is not seen_m:
            for mid in migs:
                if mid not in order:
                    order[mid] = len(order)
            seen_m = migs
    return order


def _step(first: Event, last: Event, pre: dict[str, Any], post: dict[str, Any],
          a: dict[str, Row], b: dict[str, Row], order: dict[str, int],
          changed: frozenset[str] | None = None) -> Step:
    """A step with the records it shows (module docstring); `changed`, when known, holds
    the ids of the VMM and migration rows the step's events changed."""
    pi, qi = pre["instance"], post["instance"]
    pm, qm = pre["migrations"], post["migrations"]
    migs: set[str] = set()
    vmms: set[str] = set()
    for x in (pi[4], qi[4]):
        if x is not None:
            migs.add(x)
    for x in (pi[2], pi[3], qi[2], qi[3]):
        if x is not None:
            vmms.add(x)
    if changed is None:
        migs.update(m for m, rec in pm.items() if qm.get(m) != rec)
        migs.update(m for m in qm if m not in pm)
        vmms.update(v for v, row in a.items() if b.get(v) != row)
        vmms.update(v for v in b if v not in a)
    else:
        for x in changed:
            if x in pm or x in qm:
                migs.add(x)
            elif a.get(x) != b.get(x):
                vmms.add(x)
        r1, r2 = pre.get("reservations"), post.get("reservations")
        if r1 != r2:
            vmms.update(set(r1 or ()) ^ set(r2 or ()))
    for m in migs:
        for rec in (pm.get(m), qm.get(m)):
            if rec is not None:
                vmms.add(rec[0])
                vmms.add(rec[1])
    last_rank = len(order)
    return Step(first, last, pre, post, a, b,
                sorted(vmms, key=lambda x: order.get(x, last_rank)) if len(vmms) > 1
                else list(vmms),
                sorted(migs, key=lambda x: order.get(x, last_rank)) if len(migs) > 1
                else list(migs))


def steps_of(events: list[Event], order: dict[str, int] | None = None) -> list[Step]:
    """The steps of one instance's events (the first event is the starting point)."""
    order = appearance_order(events) if order is None else order
    rows = [vmm_rows(e.records) for e in events]
    out: list[Step] = []
    i = 1
    while i < len(events):
        j = i
        key = events[i].key
        while key != "unknown" and j + 1 < len(events) and events[j + 1].key == key:
            j += 1
        out.append(_joined(events, rows, order, i, j))
        i = j + 1
    return out


def _joined(events: list[Event], rows: list[dict[str, Row]], order: dict[str, int], i: int,
            j: int) -> Step:
    """Events i..j (i >= 1) as one step from the records after event i - 1."""
    changed = events[i].changed
    for e in events[i + 1:j + 1]:
        changed = None if changed is None or e.changed is None else changed | e.changed
    return _step(events[i], events[j], events[i - 1].records, events[j].records,
                 rows[i - 1], rows[j], order, changed)


def legacy_join(step: Step) -> bool:
    """Does the step join events of a saga node under a key without an execution number?
    Recorders before `#n` keys (impl/history.py `Executions`) gave a node and its
    re-execution after a crash one key, so such a step may be several model steps."""
    k = step.first.key
    return step.first is not step.last and "/" in k and "#" not in k


def splits(events: list[Event], order: dict[str, int], step: Step,
           max_events: int = 8) -> list[list[Step]]:
    """The ways to cut a joined step of `events` (one instance's) into several consecutive
    steps, fewest pieces first (at most `max_events` events: else only every event alone)."""
    i = next(k for k, e in enumerate(events) if e is step.first)
    j = next(k for k in range(i, len(events)) if events[k] is step.last)
    rows = [vmm_rows(e.records) for e in events[i - 1:j + 1]]
    part = events[i - 1:j + 1]
    n = j - i + 1
    if n > max_events:
        masks = [(1 << (n - 1)) - 1]
    else:
        masks = sorted(range(1, 1 << (n - 1)), key=lambda m: (m.bit_count(), m))
    out: list[list[Step]] = []
    for mask in masks:  # bit b set: cut after the b-th event of the step
        pieces, a = [], 1
        for b in range(n):
            if b == n - 1 or mask >> b & 1:
                pieces.append(_joined(part, rows, order, a, b + 1))
                a = b + 2
        out.append(pieces)
    return out


def start_step(events: list[Event], order: dict[str, int]) -> Step:
    """The instance's first event as a step from itself to itself (for the fresh check)."""
    e = events[0]
    rows = vmm_rows(e.records)
    return _step(e, e, e.records, e.records, rows, rows, order)


def needed_bounds(steps: list[Step]) -> tuple[int, int]:
    """The largest numbers of VMM and migration records any one step shows."""
    return (max((len(s.vmms) for s in steps), default=0),
            max((len(s.migrations) for s in steps), default=0))


class BoundExceeded(ValueError):
    """A step needs more VMM or migration slots than the model can have."""


@lru_cache(maxsize=8)
def _gen_positions(vmms: int, migrations: int) -> list[int]:
    return [i for i, n in enumerate(observed_names(vmms, migrations))
            if n.split(".")[0] in GEN_BASES]


def project(step: Step, vmms: int, migrations: int) -> tuple[Obs, Obs, dict[str, str]]:
    """The observed variables before and after a step, for a model with these slot counts,
    and which record each slot and lock number stands for."""
    a, b = project_values(step, vmms, migrations)
    return a, b, legend(step)


def legend(step: Step) -> dict[str, str]:
    """Which record each slot and lock number of `project(step, ...)` stands for."""
    out = {f"VMM slot {k}": vid for k, vid in enumerate(step.vmms)}
    out |= {f"migration slot {m}": mid for m, mid in enumerate(step.migrations)}
    out |= {f"lock {n}": lid for lid, n in _locks(step).items()}
    return out


def _locks(step: Step) -> dict[str, int]:
    locks: dict[str, int] = {}
    for r in (step.pre, step.post):
        u = r["instance"][5]
        if u is not None and u not in locks:
            locks[u] = len(locks) + 1
    return locks


def project_values(step: Step, vmms: int, migrations: int) -> tuple[Obs, Obs]:
    """`project` without the legend (the validator needs that only to report a failure)."""
    sv, sm = step.vmms, step.migrations
    if len(sv) > vmms or len(sm) > migrations:
        raise BoundExceeded(f"the step shows {len(sv)} VMM and {len(sm)} "
                            f"migration records; the model has {vmms} and {migrations} slots")
    vslot = {vid: k for k, vid in enumerate(sv)}
    mslot = {mid: m for m, mid in enumerate(sm)}
    pre, post = step.pre, step.post
    u1, u2 = pre["instance"][5], post["instance"][5]
    locks = {} if u1 is None else {u1: 1}
    if u2 is not None and u2 not in locks:
        locks[u2] = len(locks) + 1
    pad_v = ABSENT_VMM * (vmms - len(sv))
    pad_m = ABSENT_MIGRATION * (migrations - len(sm))
    a = _one(pre, step.pre_rows, sv, sm, vslot, mslot, locks, pad_v, pad_m)
    b = _one(post, step.post_rows, sv, sm, vslot, mslot, locks, pad_v, pad_m)
    for i in _gen_positions(vmms, migrations):
        x, y = a[i], b[i]
        if x > GEN_SHIFT_ABOVE or y > GEN_SHIFT_ABOVE:  # type: ignore[operator]
            shift = int(x) - GEN_SHIFT_TO
            a[i], b[i] = int(x) - shift, min(GEN_MAX, max(0, int(y) - shift))
    return tuple(a), tuple(b)


def _one(r: dict[str, Any], rows: dict[str, Row], sv: list[str], sm: list[str],
         vslot: dict[str, int], mslot: dict[str, int], locks: dict[str, int],
         pad_v: tuple[int | bool, ...], pad_m: tuple[int | bool, ...]) -> list[int | bool]:
    """The observed values of one side of a step (`project_values`)."""
    inst = r["instance"]
    x, y, z, u = inst[2], inst[3], inst[4], inst[5]
    out: list[int | bool] = [inst[0], inst[1], NONE if x is None else vslot[x],
                             NONE if y is None else vslot[y],
                             NONE if z is None else mslot[z],
                             0 if u is None else locks[u], inst[6], r["prov_row"]]
    get = rows.get
    for vid in sv:
        out.extend(get(vid, ABSENT_VMM))
    out.extend(pad_v)
    migs = r["migrations"]
    for mid in sm:
        rec = migs.get(mid)
        if rec is None:
            out.extend(ABSENT_MIGRATION)
        else:
            out.extend((vslot[rec[0]], vslot[rec[1]], rec[2], rec[3], rec[4], rec[5], rec[6]))
    out.extend(pad_m)
    return out
