"""Engine set-up and the shared core of the datastore (SPEC §1).

One code path serves SQLite (the embedded default; WAL for file databases, a `StaticPool` for
`sqlite://` in-memory) and PostgreSQL through psycopg 3. A `schema=` argument puts the tables
in their own PostgreSQL schema so that parallel test runs never collide.

SQLite allows one writer at a time; the datastore serializes its transactions with a process
lock on SQLite so threaded runs see `database is locked` never, and PostgreSQL runs unserialized.

`reuse=True` (conformance replay, which opens one short-lived datastore per trace) takes an
in-memory SQLite engine that an earlier datastore disposed of, emptied by `schema.clear_all`,
instead of creating engine and schema again; SQLAlchemy's compiled-statement cache lives on
the engine, so the statements are not compiled again either.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import cache
from typing import Any

from sqlalchemy import Table, TextClause, bindparam, create_engine, event, text
from sqlalchemy.engine import Connection, CursorResult, Engine, Row
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


IN_MEMORY_SQLITE = ("sqlite://", "sqlite:///:memory:")
_SPARE_ENGINES: list[Engine] = []  # in-memory SQLite engines with an empty schema (`reuse`)
_SPARE_LOCK = threading.Lock()
_MAX_SPARE = 4


class DatastoreBase:
    """Engine, configuration, transactions, statement counting and row decoding."""

    def __init__(
        self,
        url: str,
        config: LifecycleConfig | None = None,
        pg_schema: str | None = None,
        create: bool = True,
        reuse: bool = False,
    ) -> None:
        self.url = url
        self.config = config or LifecycleConfig()
        self.pg_schema = pg_schema
        self._reusable = reuse and url in IN_MEMORY_SQLITE
        self._handed_over = False
        spare: Engine | None = None
        if self._reusable:
            with _SPARE_LOCK:
                spare = _SPARE_ENGINES.pop() if _SPARE_ENGINES else None
        self.engine: Engine = spare or make_engine(url, pg_schema)
        self.dialect: str = self.engine.dialect.name
        self._serial: threading.RLock | None = threading.RLock() if self.dialect == "sqlite" else None
        self.history: Any = None  # an impl.history.HistoryRecorder while recording
        self.statements = 0
        self._count_lock = threading.Lock()
        event.listen(self.engine, "before_cursor_execute", self._count)
        self._keep_conn = isinstance(self.engine.pool, StaticPool)
        self._conn: Connection | None = None
        if create and spare is None:
            with self.tx() as conn:
                s.create_all(conn)

    def _count(self, *_a: Any) -> None:
        with self._count_lock:
            self.statements += 1

    @property
    def revision(self) -> str:
        return self.config.revision

    def has(self, mutant: str) -> bool:
        return self.config.has(mutant)

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One database transaction (serialized process-wide on SQLite).

        An in-memory SQLite engine has exactly one DBAPI connection (`StaticPool`) and its
        transactions are serialized by `_serial`, so they all run on one SQLAlchemy
        `Connection` kept open (`_conn`): a pool check-out and a `Connection` per transaction
        cost more than most statements. A transaction opened inside another one on the same
        thread (the lock is re-entrant) takes its own connection, as before.
        """
        serial = self._serial or (self.history.lock if self.history is not None else None)
        with serial if serial is not None else nullcontext():
            conn = self._conn
            if self._keep_conn and (conn is None or conn.closed):
                conn = self._conn = self.engine.connect()
            if conn is None or conn.in_transaction():
                with self.engine.begin() as conn:
                    yield conn
                    if self.history is not None:  # history recording, impl/history.py
                        self.history.after_write(conn)
                return
            with conn.begin():
                yield conn
                if self.history is not None:  # history recording, impl/history.py
                    self.history.after_write(conn)

    @staticmethod
    def insert_ignore_row(conn: Connection, table: Table, values: dict[str, Any],
                          returning: str | None = None) -> CursorResult[Any]:
        """Insert one row `ON CONFLICT DO NOTHING` (idempotent inserts), optionally
        `RETURNING` one column. A `text()` statement: SQLAlchemy does not cache the compiled
        form of its dialect inserts (`sqlite.insert(...).on_conflict_do_nothing()` was compiled
        on every call), but it caches text statements."""
        return conn.execute(_insert_ignore_text(table, tuple(values), returning), values)

    def dispose(self, drop_schema: bool = False) -> None:
        if self._handed_over:  # disposed before, the engine now serves another datastore
            return
        if drop_schema and self.pg_schema is not None:
            with self.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.pg_schema}" CASCADE'))
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._keep_conn = False
        if event.contains(self.engine, "before_cursor_execute", self._count):
            event.remove(self.engine, "before_cursor_execute", self._count)
        if self._reusable:
            self._reusable = False  # a second dispose must not hand the engine out twice
            try:
                with self.engine.begin() as conn:
                    s.clear_all(conn)
            except Exception:  # noqa: BLE001 - an engine that cannot be emptied is not reused
                self.engine.dispose()
                return
            with _SPARE_LOCK:
                if len(_SPARE_ENGINES) < _MAX_SPARE:
                    _SPARE_ENGINES.append(self.engine)
                    self._handed_over = True
                    return
        self.engine.dispose()


@cache
def _insert_ignore_text(table: Table, columns: tuple[str, ...], returning: str | None) -> TextClause:
    """The statement of `DatastoreBase.insert_ignore_row` (identifiers double-quoted: the
    same text serves SQLite and PostgreSQL)."""
    names = ", ".join(f'"{c}"' for c in columns)
    params = ", ".join(":" + c for c in columns)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({params}) ON CONFLICT DO NOTHING'
    if returning is not None:
        sql += f' RETURNING "{returning}"'
    return text(sql).bindparams(*[bindparam(c, type_=table.c[c].type) for c in columns])


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
