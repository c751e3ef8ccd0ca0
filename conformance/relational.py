"""Relational observables: lemma candidates that follow a reference from one row to another.

The mined candidates of `goals.py` relate the values of two variables (`x = c ⇒ y ∈ V`).
Some facts the protocol relies on are about the row a reference names, not about the
reference itself: "the VMM a running start saga created is not deleted", "the active VMM is
not the one an update saga is about to delete", "a pending commit's generation is one ahead
of the instance's". Each observable below is a function of a state that reads such a fact,
so it can take the place of a variable in a candidate (`conformance.goals.Lemma`). Their names
say what they read, so a stored lemma (`conformance/lemmas/`) is readable and is parsed back
into the same function:

* `@F[R]`: field F of the VMM row (or migration row) that reference variable R names. When R
  is NULL (the `NONE` slot) the value is a fixed out-of-range default (`VMM_FIELDS`,
  `MIGRATION_FIELDS`), so "R names a row whose F is c" and "R is NULL" are told apart.
* `@same(A,B)`: references A and B are both set and name the same row.
* `@gd(A,B)`: how generation (or lock id) A stands to B: 0 equal, 1 one ahead, 2 one behind,
  3 further ahead, 4 further behind.

`mine` proposes candidates over these observables and the small variables from a sample of
reachable states (`walk_sample`); like every candidate they are only guesses until targeted
Houdini keeps an inductive subset (`lifecycle traces lemmas --relational`).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from model.actions import Model, model_for
from model.expr import CONCRETE, Ctx, Val
from model.seeds import ALL_SEEDS
from model.state import NONE, Config
from model.step import ModelBoundExceeded, State, successors

if TYPE_CHECKING:
    import numpy as np

Observable = tuple[bool, Callable[[Ctx, Config], Val]]

# VMM-row fields an observable may read through a reference, with the value read when the
# reference is NULL (outside every field's range, or for booleans the value of "no row")
VMM_FIELDS: dict[str, int | bool] = {
    "v_state": 63, "v_del": True, "v_alloc": False, "v_res": False,
}
MIGRATION_FIELDS: dict[str, int | bool] = {
    "m_alloc": False, "m_del": True, "m_src_st": 63, "m_tgt_st": 63, "m_src": 62, "m_tgt": 62,
}
# reference variables, by the table whose slots they name
VMM_REF_SLOTS = ("st_vmm", "mg_vmm", "mg_src", "uc_nact", "uc_ntgt", "uc_dact", "uc_dtgt",
                 "m_src", "m_tgt")
MIGRATION_REF_SLOTS = ("mg_mig", "uc_nmig", "sa_min", "sa_mout")


def _slots(cfg: Config, base: str) -> list[str]:
    return [f"{base}.{k}" for k in range(model_for(cfg).layout.sizes[base])]


def vmm_refs(cfg: Config) -> list[str]:
    return ["i_active", "i_target"] + [n for b in VMM_REF_SLOTS for n in _slots(cfg, b)]


def migration_refs(cfg: Config) -> list[str]:
    return ["i_mig"] + [n for b in MIGRATION_REF_SLOTS for n in _slots(cfg, b)]


def generation_pairs(cfg: Config) -> list[tuple[str, str]]:
    """The generations (and lock ids) compared with each other: a saga's recorded value with
    the instance row's current one, and two sagas' with each other."""
    out = [("i_gen", n) for b in ("st_gen", "uc_ngen") for n in _slots(cfg, b)]
    out += [("i_ugen", n) for b in ("st_lgen", "up_lgen", "uc_lgen", "uc_plgen")
            for n in _slots(cfg, b)]
    out += [("i_updater", n) for b in ("st_lid", "up_lid", "uc_lid", "uc_plid")
            for n in _slots(cfg, b)]
    for b in ("uc_ngen", "st_gen"):
        s = _slots(cfg, b)
        out += [(s[i], s[j]) for i in range(len(s)) for j in range(i + 1, len(s))]
    return out


def names(cfg: Config) -> list[str]:
    """Every relational observable of a configuration."""
    out = [f"@{f}[{r}]" for r in vmm_refs(cfg) for f in VMM_FIELDS]
    out += [f"@{f}[{r}]" for r in migration_refs(cfg) for f in MIGRATION_FIELDS]
    for refs in (vmm_refs(cfg), migration_refs(cfg)):
        out += [f"@same({a},{b})" for i, a in enumerate(refs) for b in refs[i + 1:]]
    out += [f"@gd({a},{b})" for a, b in generation_pairs(cfg)]
    return out


_DEREF = re.compile(r"@(\w+)\[([\w.]+)\]$")
_PAIR = re.compile(r"@(same|gd)\(([\w.]+),([\w.]+)\)$")


def observable(name: str) -> Observable | None:
    """The observable a name stands for (None if it is not a relational name)."""
    if m := _DEREF.match(name):
        field, ref = m.group(1), m.group(2)
        default = VMM_FIELDS.get(field, MIGRATION_FIELDS.get(field))
        if default is None:
            return None
        return (isinstance(default, bool),
                lambda ctx, cfg: ctx.at(field, ctx[ref], default))
    if m := _PAIR.match(name):
        kind, a, b = m.groups()
        if kind == "same":
            return (True, lambda ctx, cfg: ctx.ops.And(ctx[a] != NONE, ctx[a] == ctx[b]))

        def gd(ctx: Ctx, cfg: Config) -> Val:
            o, x, y = ctx.ops, ctx[a], ctx[b]
            return o.If(x == y, 0, o.If(x == y + 1, 1, o.If(y == x + 1, 2,
                                                           o.If(o.ult(y, x), 3, 4))))
        return (False, gd)
    return None


def path_states(model: Model) -> list[State]:
    """Every state on the seeds' own paths, opt-in seeds included, from the fresh instance
    to the seed state: the walks of `walk_sample` start from these, so that sagas are met
    in the middle of their runs. From the seed states alone, migrate sagas were nearly never
    seen past their third node (98 % of 5,000 sampled rfd486 states had none running), and
    no candidate about their later nodes was ever proposed. The paths are the ones
    `goals.seed_paths` replays."""
    from .goals import seed_paths

    return list({tuple(s.values()): s
                 for start in seed_paths(model, list(ALL_SEEDS)) for s in start.states}.values())


def walk_sample(model: Model, n: int, seed: int, min_len: int = 5, max_len: int = 60,
                log: Callable[[str], None] | None = None) -> list[State]:
    """At least `n` distinct states met on seeded random walks from the states on the seeds'
    paths (`path_states`; each walk takes `min_len` to `max_len` steps, uniformly among the
    enabled actions), then those states themselves."""
    t0 = time.perf_counter()
    rnd = random.Random(seed)
    starts = path_states(model)
    seen: dict[tuple[int | bool, ...], State] = {}
    next_log = 5_000
    while len(seen) < n:
        s = rnd.choice(starts)
        for _ in range(rnd.randint(min_len, max_len)):
            try:
                succ = list(successors(model, s))
            except ModelBoundExceeded:
                break
            if not succ:
                break
            s = rnd.choice(succ)[1]
            seen.setdefault(tuple(s.values()), s)
        if log is not None and len(seen) >= next_log:
            log(f"sample: {len(seen)} states, {time.perf_counter() - t0:.0f}s")
            next_log += 5_000
    for st in starts:
        seen.setdefault(tuple(st.values()), st)
    return list(seen.values())


# condition variables of the mined implications: the instance row, the sagas' control state,
# the rows' states and the lock's holder flag
CONDITIONS = ("i_state", "i_active", "i_target", "i_mig", "st_mode", "st_pc", "mg_mode",
              "mg_pc", "up_mode", "up_pc", "uc_mode", "uc_pc", "cr_mode", "dl_mode", "v_state",
              "v_del", "v_alloc", "up_locked", "uc_nstate", "m_alloc", "m_del")


# the sled-agents' own view of their VMMs and migrations is left out of the candidates: in a
# first attempt most candidates Houdini had to drop were facts about it that a small sample
# happened to show, and the rows' deletion and the sagas' links, which the undecided pairs
# are about, never depend on it
SLED_VIEW = ("sa_state", "sa_min", "sa_mout", "rb_state", "sa_msrc_st", "sa_mtgt_st")


@dataclass(frozen=True)
class Table:
    """A sample as a matrix: one row per state, one column per small variable (but the sleds'
    view), derived observable and relational observable; `boolean[j]` says whether column j
    is a boolean. Built once (`table`) and read by both miners."""

    cols: list[str]
    boolean: list[bool]
    m: np.ndarray

    @cached_property
    def values(self) -> list[np.ndarray]:
        """The distinct values of each column, in order."""
        import numpy as np

        return [np.unique(self.m[:, j]) for j in range(len(self.cols))]


def table(model: Model, sample: list[State]) -> Table:
    """The matrix of `sample` that `mine` and `mine_pairs` read."""
    import numpy as np

    from .goals import DERIVED, SMALL, _is_bool, _read

    cfg, layout = model.cfg, model.layout
    cols = [n for n in layout.names if layout.kind(n) in SMALL
            and n.split(".")[0] not in SLED_VIEW] + list(DERIVED) + names(cfg)
    boolean = [_is_bool(model, n) for n in cols]
    rows = []
    for s in sample:
        ctx = Ctx(CONCRETE, s, layout.sizes)
        rows.append([int(_read(ctx, n, cfg)) for n in cols])
    return Table(cols, boolean, np.array(rows, dtype=np.int16))


def mine(model: Model, tab: Table) -> list[tuple]:
    """Candidate specs (as `conformance.goals.Lemma` takes them) true in every sampled state
    of `tab`,
    over the small variables (but the sleds' view), the derived observables of `goals.py` and
    the relational ones: `("in", y, V)` for every one, and `("implies", x, c, y, V)` for x
    among `CONDITIONS` or the derived observables (the external state, the active VMM's) and
    every value c it took."""
    import numpy as np

    from .goals import DERIVED

    cfg = model.cfg
    cols, boolean, m, values = tab.cols, tab.boolean, tab.m, tab.values

    def val(j: int, v: object) -> int | bool:
        return bool(v) if boolean[j] else int(v)  # type: ignore[call-overload]
    out: list[tuple] = []
    for j, n in enumerate(cols):
        if len(values[j]) < (2 if boolean[j] else 64):
            out.append(("in", n, tuple(val(j, v) for v in values[j])))
    # weaker ranges, in case a slot the sample rarely used showed too few values: every slot
    # of a family takes the values any slot of it took, and a reference names a slot of its
    # table or nothing
    family: dict[str, set[int]] = {}
    for j, n in enumerate(cols):
        if "." in n and not boolean[j] and not n.startswith("@"):
            family.setdefault(n.split(".")[0], set()).update(int(v) for v in values[j])
    for n in cols:
        base = n.split(".")[0]
        if base in family and len(family[base]) < 64:
            out.append(("in", n, tuple(sorted(family[base]))))
    tables = {**{r: cfg.vmms for r in [*vmm_refs(cfg), "i_net"]},
              **{r: cfg.migrations for r in migration_refs(cfg)},
              **{r: cfg.vmms for r in _slots(cfg, "uc_netk")},
              **{r: cfg.update_children for r in _slots(cfg, "up_child")},
              **{r: cfg.update_parents for r in _slots(cfg, "uc_parent")}}
    out += [("in", r, (*range(n), NONE)) for r, n in tables.items()]
    conds = [j for j, n in enumerate(cols)
             if (n.split(".")[0] in CONDITIONS or n in DERIVED) and len(values[j]) > 1]
    for x in conds:
        for c in values[x]:
            sub = m[m[:, x] == c]
            for y in range(len(cols)):
                if y == x or len(values[y]) <= 1:
                    continue
                seen = np.unique(sub[:, y])
                if len(seen) < len(values[y]):
                    out.append(("implies", cols[x], val(x, c), cols[y],
                                tuple(val(y, v) for v in seen)))
    return out


# the sagas' control state: the first condition of a two-condition candidate
SAGA_CONTROL = ("st_mode", "st_pc", "mg_mode", "mg_pc", "up_mode", "up_pc", "uc_mode", "uc_pc")
# a slotted variable inside a name: (family prefix, slot), e.g. ("uc", "0") in `uc_pc.0` or in
# `@same(i_active,uc_dact.0)`
_SLOT = re.compile(r"([a-z]+)_\w*?\.(\d+)")


def mine_pairs(model: Model, tab: Table, min_support: int = 5,
               log: Callable[[str], None] | None = None) -> list[tuple]:
    """Two-condition candidates `("implies2", x1, c1, x2, c2, y, V)`: a saga slot's control
    state (x1 among `SAGA_CONTROL`) together with a relational observable about that same
    slot, or the instance's state (x2), implies a value set for y, which is an observable of
    that slot, the instance row or a derived observable.

    Only candidates that say more than the two one-condition facts together are proposed:
    V is strictly smaller than the values y took when x1 = c1 and those it took when
    x2 = c2. Conditions met by fewer than `min_support` sampled states propose nothing (their
    value sets are mostly chance)."""
    import numpy as np

    from .goals import DERIVED

    t0 = time.perf_counter()
    cols, boolean, m = tab.cols, tab.boolean, tab.m
    bits = np.left_shift(np.uint64(1), m.astype(np.uint64))
    index = {n: j for j, n in enumerate(cols)}
    slots = [set(_SLOT.findall(n)) for n in cols]
    alone: dict[tuple[int, int], np.ndarray] = {}  # (x2, c2) -> the values seen when x2 = c2

    def seen(rows: np.ndarray) -> np.ndarray:
        return np.bitwise_or.reduce(bits[rows], axis=0)

    instance = [j for j, n in enumerate(cols) if n.startswith("i_") or n in DERIVED]
    out: list[tuple] = []
    for x1, n1 in enumerate(cols):
        own = _SLOT.fullmatch(n1)
        if own is None or n1.split(".")[0] not in SAGA_CONTROL:
            continue
        slot = own.groups()
        mine_slot = [j for j in range(len(cols)) if slot in slots[j]]
        seconds = [index["i_state"]] + [j for j in mine_slot if cols[j].startswith("@")]
        targets = sorted(set(mine_slot + instance))
        for c1 in np.unique(m[:, x1]):
            r1 = m[:, x1] == c1
            if r1.sum() < min_support:
                continue
            s1 = seen(r1)
            for x2 in seconds:
                if x2 == x1:
                    continue
                for c2 in np.unique(m[r1, x2]):
                    r12 = r1 & (m[:, x2] == c2)
                    if r12.sum() < min_support:
                        continue
                    if (x2, int(c2)) not in alone:
                        alone[(x2, int(c2))] = seen(m[:, x2] == c2)
                    s2 = alone[(x2, int(c2))]
                    s12 = seen(r12)
                    for y in targets:
                        if y in (x1, x2) or s12[y] == (s1[y] & s2[y]):
                            continue
                        vals = [v for v in range(64) if int(s12[y]) >> v & 1]
                        out.append(("implies2", n1, int(c1), cols[x2],
                                    bool(c2) if boolean[x2] else int(c2), cols[y],
                                    tuple(bool(v) for v in vals) if boolean[y]
                                    else tuple(vals)))
    if log is not None:
        log(f"{len(out)} two-condition candidates ({time.perf_counter() - t0:.0f}s)")
    return out


def mine_fallbacks(model: Model, tab: Table,
                   log: Callable[[str], None] | None = None) -> list[tuple]:
    """Fallbacks for the unconditional facts about a saga slot: for every slotted column y
    whose value set `mine` proposes as `("in", y, V)`, the same kind of fact under each value
    c of that slot's control state (x among `SAGA_CONTROL`, same slot):
    `("implies", x, c, y, V_c)`, with V_c the values y took when x = c.

    `mine` proposes an implication only when it is strictly stronger than y's unconditional
    range. The fallbacks are the ones it leaves out, where V_c is the whole range: they
    say nothing more on the sample, but if Houdini drops the unconditional fact (a state it
    cannot exclude breaks it under one control state), the versions under the other
    control states survive it. Example: "no migrate saga's VMM is the active one" fails for
    a saga that has finished, and "while the saga unwinds, its VMM is not the active one"
    may still be inductive."""
    import numpy as np

    t0 = time.perf_counter()
    cols, boolean, m, values = tab.cols, tab.boolean, tab.m, tab.values
    control: dict[tuple[str, ...], list[int]] = {}
    for j, n in enumerate(cols):
        own = _SLOT.fullmatch(n)
        if own is not None and n.split(".")[0] in SAGA_CONTROL:
            control.setdefault(own.groups(), []).append(j)
    out: list[tuple] = []
    for y, ny in enumerate(cols):
        if len(values[y]) >= (2 if boolean[y] else 64):
            continue  # `mine` proposes no range for y
        for slot in sorted(set(_SLOT.findall(ny))):
            for x in control.get(slot, []):
                if x == y:
                    continue
                for c in values[x]:
                    seen = np.unique(m[m[:, x] == c, y])
                    if len(seen) < len(values[y]):
                        continue  # strictly stronger: `mine` proposes it already
                    out.append(("implies", cols[x], int(c), ny,
                                tuple(bool(v) if boolean[y] else int(v) for v in seen)))
    if log is not None:
        log(f"{len(out)} fallback candidates ({time.perf_counter() - t0:.0f}s)")
    return out


def sled_ranges(model: Model, sample: list[State]) -> list[tuple]:
    """Range candidates for the sled-agents' view (`SLED_VIEW`), which `table` leaves out:
    every slot of a family takes the values any slot of it took in `sample`, and a
    migration reference names a migration slot or nothing. No implications: the first
    attempt showed those to be chance. The fourth attempt's witness had migration states
    out of every range the sled-agents use (44 and 47); these exclude such pre-states."""
    cfg, layout = model.cfg, model.layout
    members = [n for n in layout.names if n.split(".")[0] in SLED_VIEW]
    family: dict[str, set[int]] = {}
    for n in members:
        family.setdefault(n.split(".")[0], set()).update(int(s[n]) for s in sample)
    refs = {"sa_min", "sa_mout"}
    out: list[tuple] = []
    for n in members:
        base = n.split(".")[0]
        vals = ({*range(cfg.migrations), NONE} if base in refs else family[base])
        if len(vals) < 64:
            out.append(("in", n, tuple(sorted(vals))))
    return out
