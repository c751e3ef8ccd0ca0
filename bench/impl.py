"""Benchmark of the implementation on SQLite (embedded, WAL file) and PostgreSQL.

Prints, per engine, the median over several repetitions of:
* start -> running -> stopped cycles per second (API call, sagas, sled reports, update saga),
* migrations per second (migrate saga, both sides' reports, update sagas),
* update sagas per second (start-instance-update + instance-update for a destroyed VMM),
* SQL statements per operation (counted with a SQLAlchemy `before_cursor_execute` hook),
* the database's bare conditional-UPDATE rate (one `UPDATE ... WHERE id AND updater_gen = g`
  per transaction) measured in the same run, and the ratio of each operation to it.

PostgreSQL is taken from LIFECYCLE_PG_URL, else postgresql+psycopg://root@127.0.0.1:5432/test;
it is skipped if it cannot be reached. Usage: `.venv/bin/python bench/impl.py [--n 20] [--reps 3]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import select, text, update  # noqa: E402

from impl.controller import Controller  # noqa: E402
from impl.datastore import schema as s  # noqa: E402
from model.vocab import ExternalState  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://root@127.0.0.1:5432/test"


def pump(c: Controller) -> None:
    """Run sagas, deliver reports and advance VMMs until nothing is left (no background tasks)."""
    while True:
        moved = c.run_sagas() > 0
        if c.pending_reports():
            c.deliver_all_reports()
            moved = True
        for vid in c.advanceable_vmms():
            c.vmm_advance(vid)
            moved = True
        if not moved:
            return


def make_controller(url: str) -> tuple[Controller, Callable[[], None]]:
    if url.startswith("postgresql"):
        schema = f"lc_bench_{uuid.uuid4().hex[:8]}"
        c = Controller(db_url=url, pg_schema=schema, nexus_ids=("nexus-0",), seed=None)
        return c, lambda: c.close(drop_schema=True)
    c = Controller(db_url=url, nexus_ids=("nexus-0",), seed=None)
    return c, c.close


def bench_cycles(url: str, n: int) -> tuple[float, float]:
    c, close = make_controller(url)
    try:
        ids = []
        for k in range(n):
            iid, sid = c.create_instance(f"b{k}")
            c.run_saga(sid)
            ids.append(iid)
        before = c.datastore.statements
        t0 = time.perf_counter()
        for iid in ids:
            c.start_instance(iid)
            pump(c)
            c.stop_instance(iid)
            pump(c)
        dt = time.perf_counter() - t0
        assert all(c.external_state(i) == ExternalState.STOPPED for i in ids)
        return n / dt, (c.datastore.statements - before) / n
    finally:
        close()


def bench_migrations(url: str, n: int) -> tuple[float, float]:
    c, close = make_controller(url)
    try:
        ids = []
        for k in range(n):
            iid, sid = c.create_instance(f"m{k}")
            c.run_saga(sid)
            c.start_instance(iid)
            ids.append(iid)
        pump(c)
        before = c.datastore.statements
        t0 = time.perf_counter()
        for iid in ids:
            snap = c.snapshot(iid)
            assert snap is not None and snap.active_vmm is not None
            dst = next(x for x in c.fleet.sleds if x != snap.active_vmm.sled_id)
            c.migrate_instance(iid, dst)
            pump(c)
        dt = time.perf_counter() - t0
        assert all(c.external_state(i) == ExternalState.RUNNING for i in ids)
        return n / dt, (c.datastore.statements - before) / n
    finally:
        close()


def bench_updates(url: str, n: int) -> tuple[float, float]:
    c, close = make_controller(url)
    try:
        ids = []
        for k in range(n):
            iid, sid = c.create_instance(f"u{k}")
            c.run_saga(sid)
            c.start_instance(iid)
            ids.append(iid)
        pump(c)
        for iid in ids:
            c.stop_instance(iid)
        for _ in range(4):  # Stopping, Stopped, Destroyed reach the DB; no saga runs yet
            for vid in c.advanceable_vmms():
                c.vmm_advance(vid)
            c.deliver_all_reports()
        before = c.datastore.statements
        t0 = time.perf_counter()
        c.run_sagas()
        dt = time.perf_counter() - t0
        assert all(c.external_state(i) == ExternalState.STOPPED for i in ids)
        return n / dt, (c.datastore.statements - before) / n
    finally:
        close()


def bench_bare_update(url: str, n: int) -> float:
    c, close = make_controller(url)
    try:
        iid, sid = c.create_instance("bare")
        c.run_saga(sid)
        i = s.instance
        ds = c.datastore
        with ds.tx() as conn:
            gen = conn.execute(select(i.c.updater_gen).where(i.c.id == iid)).scalar_one()
        t0 = time.perf_counter()
        for _ in range(n):
            with ds.tx() as conn:
                conn.execute(
                    update(i).where(i.c.id == iid, i.c.updater_gen == gen).values(updater_gen=gen + 1)
                )
            gen += 1
        return n / (time.perf_counter() - t0)
    finally:
        close()


def pg_reachable(url: str) -> bool:
    from sqlalchemy import create_engine

    try:
        eng = create_engine(url)
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="operations per repetition")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (the median is shown)")
    args = ap.parse_args()
    console = Console(width=max(120, Console().width))
    tmp = tempfile.mkdtemp(prefix="lc_bench_")
    engines: list[tuple[str, str]] = [("sqlite", f"sqlite:///{tmp}/bench.sqlite")]
    pg = os.environ.get("LIFECYCLE_PG_URL") or DEFAULT_PG
    if pg_reachable(pg):
        engines.append(("postgresql", pg))
    else:
        console.print(f"[yellow]PostgreSQL at {pg} unreachable: skipped[/yellow]")
    table = Table(title=f"instance-lifecycle implementation (median of {args.reps} x {args.n} ops)")
    for col in ("engine", "metric", "ops/s", "stmts/op", "bare UPDATE/s", "bound/s", "ops/bound"):
        table.add_column(col, justify="left" if col in ("engine", "metric") else "right", no_wrap=True)
    for name, url in engines:
        if url.startswith("sqlite"):
            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        bare = statistics.median(bench_bare_update(url, max(200, args.n * 20)) for _ in range(args.reps))
        for metric, fn in (
            ("start/run/stop cycles", bench_cycles),
            ("migrations", bench_migrations),
            ("update sagas", bench_updates),
        ):
            runs = [fn(url, args.n) for _ in range(args.reps)]
            rate = statistics.median(r[0] for r in runs)
            stmts = statistics.median(r[1] for r in runs)
            limit = bare / stmts
            table.add_row(name, metric, f"{rate:,.1f}", f"{stmts:,.0f}", f"{bare:,.0f}",
                          f"{limit:,.1f}/s", f"{rate / limit:.0%}")
    console.print(table)
    console.print(
        "bound/s = bare UPDATE/s divided by stmts/op: the rate if every statement of the operation "
        "cost one bare conditional-UPDATE transaction (SQLite is a WAL file; statements inside one "
        "transaction are cheaper, so ops/bound can exceed 100%)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
