"""Benchmark of `lifecycle verify`: wall time per revision and depth (all invariants), time per
invariant at one depth, and time to each mutant's counterexample.

Every cell runs `lifecycle verify` in a fresh process with a timeout, so one slow cell cannot
stall the table. Cells of one table run one after another on this machine, so their ratios
are measured side by side.

    .venv/bin/python bench/verify.py                         # depths 4,6,8; mutants at 8
    .venv/bin/python bench/verify.py --depths 10,20,30 --timeout 900
    .venv/bin/python bench/verify.py --per-invariant --invariant-depth 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
LIFECYCLE = [sys.executable, "-m", "lifecycle.cli"]


def run(args: list[str], timeout: float) -> tuple[float | None, dict | None]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        t0 = time.perf_counter()
        try:
            subprocess.run(LIFECYCLE + ["verify", *args, "--json", str(out),
                                        "--trace-dir", str(Path(tmp) / "t")],
                           cwd=ROOT, timeout=timeout, capture_output=True, check=False)
        except subprocess.TimeoutExpired:
            return None, None
        dt = time.perf_counter() - t0
        return dt, json.loads(out.read_text()) if out.exists() else None


def fmt(x: float | None) -> str:
    return "timeout" if x is None else f"{x:.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="4,6,8")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell (median reported)")
    ap.add_argument("--per-invariant", action="store_true")
    ap.add_argument("--invariant-depth", type=int, default=4)
    ap.add_argument("--mutant-depth", type=int, default=8, help="0: skip the mutant table")
    a = ap.parse_args()
    console = Console()
    depths = [int(d) for d in a.depths.split(",") if d]  # --depths "" skips this table
    from model.actions import model_for
    from model.invariants import INVARIANTS
    from model.state import Config
    from model.vocab import MUTANTS

    nvars = len(model_for(Config()).layout.vars)
    t = Table(title=f"lifecycle verify, all {len(INVARIANTS)} invariants "
                    f"({nvars} state variables; median of {a.repeat})")
    t.add_column("revision")
    for d in depths:
        t.add_column(f"depth {d}", justify="right")
    for rev in ("baseline", "rfd486") if depths else ():
        row = [rev]
        for d in depths:
            times = [run(["-r", rev, "-d", str(d)], a.timeout)[0] for _ in range(a.repeat)]
            ok = [x for x in times if x is not None]
            row.append(fmt(statistics.median(ok)) if len(ok) == len(times) else "timeout")
        t.add_row(*row)
        console.print(f"done: {rev}")
    if depths:
        console.print(t)

    if a.per_invariant:
        ti = Table(title=f"one invariant at a time, depth {a.invariant_depth}")
        ti.add_column("invariant")
        ti.add_column("baseline", justify="right")
        ti.add_column("rfd486", justify="right")
        for inv in INVARIANTS:
            ti.add_row(inv, *[fmt(run(["-r", rev, "-d", str(a.invariant_depth), "-i", inv],
                                      a.timeout)[0]) for rev in ("baseline", "rfd486")])
        console.print(ti)

    if a.mutant_depth:
        tm = Table(title=f"time to each mutant's counterexample (depth bound {a.mutant_depth})")
        tm.add_column("mutant")
        for rev in ("baseline", "rfd486"):
            tm.add_column(f"{rev}: time", justify="right")
            tm.add_column(f"{rev}: depth", justify="right")
        for m in MUTANTS:
            row = [m]
            for rev in ("baseline", "rfd486"):
                dt, doc = run(["-r", rev, "-m", m, "-d", str(a.mutant_depth), "--first"],
                              a.timeout)
                depth = "-"
                if doc:
                    v = doc["revisions"][rev]["verdicts"].values()
                    ds = [x["depth"] for x in v if x["status"] == "violated"]
                    depth = str(min(ds)) if ds else "not caught"
                row += [fmt(dt), depth]
            tm.add_row(*row)
        console.print(tm)


if __name__ == "__main__":
    main()
