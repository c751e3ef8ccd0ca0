"""The durable saga log (SPEC "Saga semantics"): one `saga` row per saga and its node events.

Event types: `started`, `succeeded` (data = JSON output), `failed` (data = error),
`undo_started`, `undo_finished`, `undo_failed`. Saga states: `running`, `unwinding`, `done`,
`unwound` (all undos finished) and `stuck` (an undo failed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update

from impl.datastore import schema as s
from impl.datastore.base import DatastoreBase
from impl.datastore.records import now

sg = s.saga
ev = s.saga_node_event

FINISHED_SAGA_STATES = ("done", "unwound", "stuck")

# the statements every saga step runs, built once (building and cache-keying a statement costs
# more than running it on SQLite); values go in as parameters
_INSERT_SAGA = sg.insert()
_INSERT_EVENT = ev.insert()
_SET_STATE = update(sg).where(sg.c.id == bindparam("saga_id")).values(state=bindparam("new_state"))
_FETCH = select(sg).where(sg.c.id == bindparam("saga_id"))
_EVENTS = select(ev).where(ev.c.saga_id == bindparam("saga_id")).order_by(ev.c.id)


@dataclass(frozen=True)
class SagaRow:
    id: str
    name: str
    params: dict[str, Any]
    owner: str
    state: str


@dataclass(frozen=True)
class NodeEvent:
    node_index: int
    node_name: str
    event_type: str
    data: Any


class SagaLogQueries(DatastoreBase):
    def saga_create(self, saga_id: str, name: str, params: dict[str, Any], owner: str) -> None:
        with self.tx() as conn:
            conn.execute(
                _INSERT_SAGA,
                {
                    "id": saga_id,
                    "name": name,
                    "params": json.dumps(params, sort_keys=True),
                    "owner": owner,
                    "state": "running",
                    "time_created": now(),
                },
            )

    def saga_set_state(self, saga_id: str, state: str) -> None:
        with self.tx() as conn:
            conn.execute(_SET_STATE, {"saga_id": saga_id, "new_state": state})

    def saga_record_event(
        self, saga_id: str, creator: str, node_index: int, node_name: str, event_type: str, data: Any = None
    ) -> None:
        with self.tx() as conn:
            conn.execute(
                _INSERT_EVENT,
                {
                    "saga_id": saga_id,
                    "node_index": node_index,
                    "node_name": node_name,
                    "event_type": event_type,
                    "data": None if data is None else json.dumps(data, sort_keys=True),
                    "event_time": now(),
                    "creator": creator,
                },
            )

    def saga_reassign(self, old_owner: str, new_owner: str) -> int:
        """Hand the unfinished sagas of a dead replica to another one (operator action)."""
        with self.tx() as conn:
            return int(
                conn.execute(
                    update(sg)
                    .where(sg.c.owner == old_owner, sg.c.state.not_in(FINISHED_SAGA_STATES))
                    .values(owner=new_owner)
                ).rowcount
            )

    def saga_fetch(self, saga_id: str) -> SagaRow | None:
        with self.tx() as conn:
            row = conn.execute(_FETCH, {"saga_id": saga_id}).first()
        if row is None:
            return None
        return SagaRow(row.id, row.name, json.loads(row.params), row.owner, row.state)

    def saga_list(self, owner: str | None = None, unfinished: bool = False) -> list[SagaRow]:
        q = select(sg).order_by(sg.c.time_created, sg.c.id)
        if owner is not None:
            q = q.where(sg.c.owner == owner)
        if unfinished:
            q = q.where(sg.c.state.not_in(FINISHED_SAGA_STATES))
        with self.tx() as conn:
            return [SagaRow(r.id, r.name, json.loads(r.params), r.owner, r.state) for r in conn.execute(q)]

    def saga_events(self, saga_id: str) -> list[NodeEvent]:
        with self.tx() as conn:
            rows = conn.execute(_EVENTS, {"saga_id": saga_id}).all()
        return [
            NodeEvent(r.node_index, r.node_name, r.event_type, None if r.data is None else json.loads(r.data))
            for r in rows
        ]
