"""Benchmark of history validation: recorded events validated per second.

Records a free run (SQLite in memory, two replicas, threads, faults) with history recording
on, then makes a history of `--events` events (default 10,000) out of it: the recorded
history is repeated with every id renamed per copy (each copy is a new set of instances with
the same abstract behaviour). Prints the time to load the file, to build the model's Z3
encoding (once per process), to validate it the first time (memo empty: Z3 answers each
distinct abstract step once; wall and CPU time, a single measurement since only the first
validation in a process has an empty memo) and again with the memo warm; load and warm validation are repeated `--repeats`
times and the medians printed (with the median CPU time of load + validate, less disturbed
than wall time when other jobs share the machine). Usage:
`.venv/bin/python bench/validate.py [--events 10000] [--seed 3] [--instances 8] [--ops 400]
[--repeats 5]`.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from conformance.history_file import load  # noqa: E402
from conformance.history_run import record_free_run  # noqa: E402
from conformance.history_steps import appearance_order, needed_bounds, steps_of  # noqa: E402
from conformance.impl_fixtures import backend  # noqa: E402
from conformance.validate import _cached_encoding, validate  # noqa: E402
from model.state import Config  # noqa: E402

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _retag(tag: str, m: re.Match[str]) -> str:
    """A uuid with its first eight hex digits replaced by `tag`."""
    return tag + m.group(0)[8:]


def replicate(src: Path, dst: Path, events: int) -> int:
    """Write `events` events made of renamed copies of `src`'s events; returns copies made."""
    lines = src.read_text().splitlines()
    head, body = lines[0], [json.loads(x) for x in lines[1:] if x.strip()]
    if not body:
        raise SystemExit("the recorded run has no events")
    out = [head]
    seq = copy = 0
    while seq < events:
        tag = f"{copy:08x}"
        for ev in body:
            if seq >= events:
                break
            seq += 1
            ev = dict(ev, seq=seq)
            out.append(UUID.sub(functools.partial(_retag, tag), json.dumps(ev)))
        copy += 1
    dst.write_text("\n".join(out) + "\n")
    return copy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--instances", type=int, default=8)
    ap.add_argument("--ops", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    con = Console()
    with tempfile.TemporaryDirectory() as d:
        rec, big = Path(d) / "recorded.jsonl", Path(d) / "history.jsonl"
        t0 = time.perf_counter()
        n, _stats = record_free_run(rec, backend("sqlite"), seed=args.seed,
                                    instances=args.instances, ops=args.ops)
        t_rec = time.perf_counter() - t0
        copies = replicate(rec, big, args.events)
        t0 = time.perf_counter()
        h = load(big)
        t_load = time.perf_counter() - t0
        nv, nm = needed_bounds([s for evs in h.by_instance().values()
                                for s in steps_of(evs, appearance_order(evs))])
        cfg = Config(vmms=max(3, nv), migrations=max(2, nm))
        t0 = time.perf_counter()
        _cached_encoding(cfg)
        t_enc = time.perf_counter() - t0
        c0, t0 = time.process_time(), time.perf_counter()
        first = validate(h)
        t_first, c_first = time.perf_counter() - t0, time.process_time() - c0
        loads, agains, cpus = [t_load], [], []
        for k in range(args.repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            if k:
                h = load(big)
            t1 = time.perf_counter()
            again = validate(h)
            t2, c2 = time.perf_counter(), time.process_time()
            assert (again.failure is None) == (first.failure is None)
            if k:
                loads.append(t1 - t0)
            agains.append(t2 - t1)
            cpus.append(c2 - c0)
        t_load, t_again = statistics.median(loads), statistics.median(agains)
        t_cpu = statistics.median(cpus[1:] or cpus)
    ev = len(h.events)
    t = Table(title=f"history validation: {ev} events ({n} recorded in {t_rec:.1f} s, "
                    f"{copies} renamed copies), {first.steps} steps, "
                    f"{first.distinct} distinct abstract steps; medians of {args.repeats}")
    for col in ("phase", "seconds", "events/s"):
        t.add_column(col)
    t.add_row("load + format checks", f"{t_load:.3f}", f"{ev / t_load:,.0f}")
    t.add_row("Z3 encoding of the model (once per process)", f"{t_enc:.3f}", "")
    t.add_row("validate, memo empty (first in this process)", f"{t_first:.3f}",
              f"{ev / t_first:,.0f}")
    t.add_row("validate, memo empty, CPU time", f"{c_first:.3f}", f"{ev / c_first:,.0f}")
    t.add_row("validate, memo warm", f"{t_again:.3f}", f"{ev / t_again:,.0f}")
    t.add_row("load + validate (memo warm)", f"{t_load + t_again:.3f}",
              f"{ev / (t_load + t_again):,.0f}")
    t.add_row("load + validate (memo warm), CPU time", f"{t_cpu:.3f}", f"{ev / t_cpu:,.0f}")
    con.print(t)
    verdict = "valid" if first.failure is None else f"unexplained at seq {first.failure.event.seq}"
    con.print(f"verdict: {verdict}")
    con.print(f"cold validation (memo empty, Z3 encoding excluded): {t_first:.3f} s, "
              f"{ev / t_first:,.0f} events/s (target: 50,000 events/s)")


if __name__ == "__main__":
    main()
