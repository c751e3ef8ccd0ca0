"""The slot map: which implementation id stands for which model slot.

The model names records by small slot numbers (VMM slot 0..2, migration slot 0..1, saga slot
per saga kind) and lock ids by small integers; the implementation uses UUID strings. Replay
learns the correspondence as ids appear (from the outputs of the saga nodes that draw them)
and refuses to bind one id to two slots or one slot to two ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from model.state import NONE
from model.step import State
from model.vocab import MigrationState


class BindingConflict(ValueError):
    """An id is already bound to another slot (or the slot to another id)."""


@dataclass
class Bijection:
    """A partial one-to-one map between model slots (ints) and implementation ids."""

    what: str
    to_id: dict[int, str] = field(default_factory=dict)
    to_slot: dict[str, int] = field(default_factory=dict)

    def bind(self, slot: int, ident: str) -> None:
        if self.to_id.get(slot, ident) != ident or self.to_slot.get(ident, slot) != slot:
            raise BindingConflict(
                f"{self.what}: cannot bind slot {slot} to {ident} (slot holds "
                f"{self.to_id.get(slot)}, id is slot {self.to_slot.get(ident)})"
            )
        self.to_id[slot] = ident
        self.to_slot[ident] = slot

    def slot(self, ident: str | None, none: int) -> int | None:
        """The slot of `ident`; `none` for a NULL id; None when the id is not bound."""
        if ident is None:
            return none
        return self.to_slot.get(ident)

    def id(self, slot: int) -> str | None:
        return self.to_id.get(slot)


SagaKey = tuple[str, int | None]  # (model variable prefix, slot or None for one-slot sagas)


@dataclass
class SlotMap:
    """Everything replay has learnt about how model slots name implementation records."""

    vmms: Bijection = field(default_factory=lambda: Bijection("VMM"))
    migrations: Bijection = field(default_factory=lambda: Bijection("migration"))
    locks: Bijection = field(default_factory=lambda: Bijection("lock id"))
    sagas: dict[SagaKey, str] = field(default_factory=dict)

    def sled_migration_side(self, s: State, m: int,
                            side: str) -> tuple[str, MigrationState, int] | None:
        """The sled's view in model state `s` of migration slot `m`'s `side` ("src" or
        "tgt"): (implementation id, state, generation), or None when there is none."""
        if m == NONE:
            return None
        mid = self.migrations.id(m)
        st = int(s[f"sa_m{side}_st.{m}"])
        if mid is None or st == MigrationState.ABSENT:
            return None
        return mid, MigrationState(st), int(s[f"sa_m{side}_gen.{m}"])

    def saga_key_of(self, saga_id: str) -> SagaKey | None:
        for k, v in self.sagas.items():
            if v == saga_id:
                return k
        return None
