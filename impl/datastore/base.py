"""Engine set-up and the shared core of the datastore (SPEC §1).

One code path serves SQLite (the embedded default; WAL for file databases, a `StaticPool` for
`sqlite://` in-memory) and PostgreSQL through psycopg 3. A `schema=` argument puts the tables
in their own PostgreSQL schema so that parallel test runs never collide.

SQLite allows one writer at a time; the datastore serializes its transactions with a process
lock on SQLite so threaded runs see `database is locked` never, and PostgreSQL runs unserialized.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import Table, create_engine, event, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.pool import StaticPool

from impl.config import LifecycleConfig
from impl.datastore import schema as s
from impl.datastore.enums import instance_state, migration_state, vmm_state
from impl.datastore.records import InstanceRecord, MigrationRecord, VmmRecord


def make_engine(url: str, pg_schema: str | None = None) -> Engine:
    """Create an engine for `url`; see the module docstring for the per-dialect choices."""
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            engine = create_engine(
                "sqlite://",
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
            )
        else:
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

            @event.listens_for(engine, "connect")
            def _wal(dbapi_conn: Any, _rec: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        return engine
    connect_args: dict[str, Any] = {}
    if pg_schema is not None:
        connect_args["options"] = f"-csearch_path={pg_schema}"
        boot = create_engine(url)
        with boot.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{pg_schema}"'))
        boot.dispose()
    return create_engine(url, connect_args=connect_args, pool_size=10, max_overflow=20)


class DatastoreBase:
    """Engine, configuration, transactions, statement counting and row decoding."""

    def __init__(
        self,
        url: str,
        config: LifecycleConfig | None = None,
        pg_schema: str | None = None,
        create: bool = True,
    ) -> None:
        self.url = url
        self.config = config or LifecycleConfig()
        self.pg_schema = pg_schema
        self.engine: Engine = make_engine(url, pg_schema)
        self.dialect: str = self.engine.dialect.name
        self._serial: threading.RLock | None = threading.RLock() if self.dialect == "sqlite" else None
        self.history: Any = None  # an impl.history.HistoryRecorder while recording
        self.statements = 0
        self._count_lock = threading.Lock()

        @event.listens_for(self.engine, "before_cursor_execute")
        def _count(*_a: Any) -> None:
            with self._count_lock:
                self.statements += 1

        if create:
            with self.tx() as conn:
                s.create_all(conn)

    @property
    def revision(self) -> str:
        return self.config.revision

    def has(self, mutant: str) -> bool:
        return self.config.has(mutant)

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One database transaction (serialized process-wide on SQLite)."""
        serial = self._serial or (self.history.lock if self.history is not None else None)
        with serial if serial is not None else nullcontext():
            with self.engine.begin() as conn:
                yield conn
                if self.history is not None:  # history recording, impl/history.py
                    self.history.after_write(conn)

    def insert_ignore(self, table: Table) -> Any:
        """`INSERT ... ON CONFLICT DO NOTHING` in the engine's dialect (idempotent inserts)."""
        mod: Any = pg_dialect if self.dialect == "postgresql" else sqlite_dialect
        return mod.insert(table).on_conflict_do_nothing()

    def dispose(self, drop_schema: bool = False) -> None:
        if drop_schema and self.pg_schema is not None:
            with self.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.pg_schema}" CASCADE'))
        self.engine.dispose()


def instance_from_row(r: Row[Any] | Any, prefix: str = "") -> InstanceRecord:
    m = r._mapping
    return InstanceRecord(
        id=m[prefix + "id"],
        name=m[prefix + "name"],
        project_id=m[prefix + "project_id"],
        ncpus=m[prefix + "ncpus"],
        memory=m[prefix + "memory"],
        time_deleted=m[prefix + "time_deleted"],
        state=instance_state(m[prefix + "state"]),
        state_generation=m[prefix + "state_generation"],
        time_state_updated=m[prefix + "time_state_updated"],
        active_propolis_id=m[prefix + "active_propolis_id"],
        target_propolis_id=m[prefix + "target_propolis_id"],
        migration_id=m[prefix + "migration_id"],
        updater_id=m[prefix + "updater_id"],
        updater_gen=m[prefix + "updater_gen"],
    )


def vmm_from_row(r: Row[Any] | Any, prefix: str = "") -> VmmRecord | None:
    m = r._mapping
    if m[prefix + "id"] is None:
        return None
    return VmmRecord(
        id=m[prefix + "id"],
        instance_id=m[prefix + "instance_id"],
        sled_id=m[prefix + "sled_id"],
        propolis_ip=m[prefix + "propolis_ip"],
        propolis_port=m[prefix + "propolis_port"],
        time_deleted=m[prefix + "time_deleted"],
        state=vmm_state(m[prefix + "state"]),
        state_generation=m[prefix + "state_generation"],
        time_state_updated=m[prefix + "time_state_updated"],
    )


def migration_from_row(r: Row[Any] | Any, prefix: str = "") -> MigrationRecord | None:
    m = r._mapping
    if m[prefix + "id"] is None:
        return None
    return MigrationRecord(
        id=m[prefix + "id"],
        instance_id=m[prefix + "instance_id"],
        time_deleted=m[prefix + "time_deleted"],
        source_state=migration_state(m[prefix + "source_state"]),
        source_propolis_id=m[prefix + "source_propolis_id"],
        source_gen=m[prefix + "source_gen"],
        target_state=migration_state(m[prefix + "target_state"]),
        target_propolis_id=m[prefix + "target_propolis_id"],
        target_gen=m[prefix + "target_gen"],
    )
