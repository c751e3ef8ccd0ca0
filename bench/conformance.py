"""Benchmark of conformance replay: model steps replayed (and compared) per second.

Generates a baseline suite (seeded), then replays every trace on SQLite (in-memory) and, when
reachable, PostgreSQL (LIFECYCLE_PG_URL, else postgresql+psycopg://postgres@127.0.0.1:5432/test),
`--repeats` times, and prints the median steps per second with and without the per-trace
set-up (database and controller), and the median over the steps' CPU time of
this process (less disturbed than wall time when other jobs share the machine). On SQLite it
also replays with the implementation's history recorder on (`lifecycle conformance`'s second
pass), alternating with the plain replays. Usage:
`.venv/bin/python bench/conformance.py [--walks 120] [--seed 0] [--pg-traces 10] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from conformance.generate import generate_suite, write_suite  # noqa: E402
from conformance.impl_fixtures import unique_schema  # noqa: E402
from conformance.replay import Replayer  # noqa: E402
from impl.history import HistoryRecorder  # noqa: E402
from model.state import Config  # noqa: E402
from model.trace import LoadedTrace, load_itf  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def replay_all(traces: list[tuple[str, LoadedTrace]], url: str,
               pg: bool, history: bool = False) -> tuple[int, float, float, float]:
    """Returns (steps, wall seconds including set-up, wall seconds spent in steps only, CPU
    seconds spent in steps only). With `history`, the implementation's history recorder
    (impl/history.py) is on, as in `lifecycle conformance`'s second replay pass."""
    steps, wall, stepping, cpu = 0, 0.0, 0.0, 0.0
    tmp = Path(tempfile.mkdtemp(prefix="lc_bench_history_"))
    for n, (path, tr) in enumerate(traces):
        t0 = time.perf_counter()
        r = Replayer(tr, path, url, unique_schema("lc_bench") if pg else None)
        rec = HistoryRecorder(tmp / f"{n}.jsonl").attach(r.ctrl.datastore) if history else None
        try:
            t1, c1 = time.perf_counter(), time.process_time()
            if r._setup(tr.states[0]) is not None:
                raise SystemExit(f"{path}: mismatch at set-up")
            for i, label in enumerate(tr.labels, start=1):
                mm = r.step(i, label, tr.states[i - 1], tr.states[i])
                if mm is not None:
                    raise SystemExit(f"{path}: {mm.render()}")
            t2, c2 = time.perf_counter(), time.process_time()
        finally:
            if rec is not None:
                rec.detach(r.ctrl.datastore)
            r.ctrl.close(drop_schema=True)
        steps += len(tr.labels)
        wall += time.perf_counter() - t0
        stepping += t2 - t1
        cpu += c2 - c1
    shutil.rmtree(tmp, ignore_errors=True)
    return steps, wall, stepping, cpu


Rates = tuple[int, float, float, float]


def _medians(runs: list[tuple[int, float, float, float]]) -> Rates:
    steps = runs[0][0]
    return (steps, statistics.median(steps / r[2] for r in runs),
            statistics.median(steps / r[1] for r in runs),
            statistics.median(steps / r[3] for r in runs))


def median_rates(traces: list[tuple[str, LoadedTrace]], url: str, pg: bool,
                 repeats: int) -> Rates:
    """Steps, and the median over `repeats` replays of all traces of steps/s (steps only),
    steps/s (with set-up) and steps per CPU second (steps only)."""
    return _medians([replay_all(traces, url, pg) for _ in range(repeats)])


def median_rates_side_by_side(traces: list[tuple[str, LoadedTrace]], url: str,
                              repeats: int) -> tuple[Rates, Rates]:
    """The same, without and with the history recorder, the two replays alternating."""
    plain, rec = [], []
    for _ in range(repeats):
        plain.append(replay_all(traces, url, False))
        rec.append(replay_all(traces, url, False, history=True))
    return _medians(plain), _medians(rec)


def pg_reachable(url: str) -> bool:
    try:
        with create_engine(url).connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "skip PostgreSQL"
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--walks", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pg-traces", type=int, default=10, help="traces replayed on PostgreSQL")
    ap.add_argument("--repeats", type=int, default=3, help="replays of the suite; medians")
    args = ap.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as d:
        paths = write_suite(generate_suite(Config(), seed=args.seed, walks=args.walks), Path(d),
                            args.seed)
        traces = [(str(p), load_itf(p)) for p in paths]
    t = Table(title=f"conformance replay, baseline suite: {len(traces)} traces, "
                    f"median of {args.repeats} replays")
    for col in ("engine", "traces", "steps", "steps/s (steps only)", "steps/s (with set-up)",
                "steps per CPU s (steps only)"):
        t.add_column(col)
    (steps, only, setup, cpu), (_, h_only, h_setup, h_cpu) = median_rates_side_by_side(
        traces, "sqlite://", args.repeats)
    t.add_row("sqlite (memory)", str(len(traces)), str(steps), f"{only:.0f}", f"{setup:.0f}",
              f"{cpu:.0f}")
    t.add_row("sqlite (memory), history recorder on", str(len(traces)), str(steps),
              f"{h_only:.0f}", f"{h_setup:.0f}", f"{h_cpu:.0f}")
    url = os.environ.get("LIFECYCLE_PG_URL") or DEFAULT_PG
    sub = traces[: args.pg_traces]
    if sub and pg_reachable(url):
        steps, only, setup, cpu = median_rates(sub, url, True, args.repeats)
        t.add_row("postgresql", str(len(sub)), str(steps), f"{only:.0f}", f"{setup:.0f}",
                  f"{cpu:.0f}")
    else:
        t.add_row("postgresql", "-", "-", "unreachable" if sub else "skipped", "-", "-")
    console.print(t)


if __name__ == "__main__":
    main()
