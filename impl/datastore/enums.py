"""Database spellings of the protocol enums (SPEC §2): the enum name in lower case.

`model.vocab` gives the model's integer encoding; the database stores names, as omicron's
Postgres/CockroachDB enums do (`no_vmm`, `saga_unwound`, `in_progress`, ...).
"""

from __future__ import annotations

from model.vocab import InstanceState, MigrationState, VmmState


def db_name(value: InstanceState | VmmState | MigrationState) -> str:
    return value.name.lower()


def instance_state(name: str) -> InstanceState:
    return InstanceState[name.upper()]


def vmm_state(name: str) -> VmmState:
    return VmmState[name.upper()]


def migration_state(name: str) -> MigrationState:
    return MigrationState[name.upper()]


def names(values: tuple[VmmState, ...] | tuple[InstanceState, ...] | tuple[MigrationState, ...]) -> list[str]:
    return [db_name(v) for v in values]
