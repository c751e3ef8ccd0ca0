"""Benchmark of `lifecycle verify`: wall time per revision and depth (all invariants), time per
invariant at one depth, and time to each mutant's counterexample.

Every cell runs `lifecycle verify` in a fresh process with a timeout, so one slow cell cannot
stall the table. Cells of one table run one after another on this machine, so their ratios
are measured side by side.

    .venv/bin/python bench/verify.py                         # depths 4,6,8; mutants at 8
    .venv/bin/python bench/verify.py --depths 10,20,30 --timeout 900
    .venv/bin/python bench/verify.py --per-invariant --invariant-depth 6
    .venv/bin/python bench/verify.py --scaling                # depths 10,20,30, per invariant
    .venv/bin/python bench/verify.py --lemmas --repeat 3      # default run, lemmas on / off

`--scaling` prints one table: for both revisions and each of `--scaling-depths`, the time of
each invariant checked alone and of all invariants together, with the number of state
variables in the title. A cell that does not finish within `--cell-timeout` seconds says
"timeout after N s"; deeper cells of that row are then not run (a deeper check repeats every
shallower depth first, so it cannot finish sooner) and say so. Worst case it takes about
(invariants + 1) x 2 revisions x the cell timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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
    """One `lifecycle verify` in its own process group; on timeout the whole group (the
    verifier's worker processes too) is killed, so it cannot slow the next cell down."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        t0 = time.perf_counter()
        proc = subprocess.Popen(LIFECYCLE + ["verify", *args, "--json", str(out),
                                             "--trace-dir", str(Path(tmp) / "t")],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None, None
        dt = time.perf_counter() - t0
        return dt, json.loads(out.read_text()) if out.exists() else None


def fmt(x: float | None, timeout: float | None = None) -> str:
    if x is None:
        return "timeout" if timeout is None else f"timeout after {timeout:.0f} s"
    return f"{x:.1f} s"


def scaling(console: Console, depths: list[int], timeout: float, nvars: int) -> None:
    """Time per invariant and in total, per revision and depth; timeouts stated as such."""
    from model.invariants import INVARIANTS

    revs = ("baseline", "rfd486")
    t = Table(title=f"lifecycle verify per invariant and in total ({nvars} state variables; "
                    f"cell timeout {timeout:.0f} s)")
    t.add_column("invariant")
    for rev in revs:
        for d in depths:
            t.add_column(f"{rev} d{d}", justify="right")
    rows: list[tuple[str, list[str]]] = [(i, ["-i", i]) for i in INVARIANTS]
    rows.append(("all (total)", []))
    for label, extra in rows:
        cells = [label]
        for rev in revs:
            stuck: int | None = None
            for d in depths:
                if stuck is not None:
                    cells.append(f"not run (timed out at d{stuck})")
                    continue
                dt, _ = run(["-r", rev, "-d", str(d), *extra], timeout)
                cells.append(fmt(dt, timeout))
                if dt is None:
                    stuck = d
        t.add_row(*cells)
        console.print(f"done: {label}: " + ", ".join(cells[1:]))
    console.print(t)


def lemmas_ab(console: Console, depth: int, repeat: int, timeout: float) -> None:
    """The default run (both revisions) with and without the stored lemmas on the path
    states, alternating in fresh processes, so the two columns share the machine's state;
    the verdicts must agree."""
    t = Table(title=f"lifecycle verify, both revisions, depth {depth}: with and without the "
                    f"stored lemmas (alternating, {repeat} runs each)")
    t.add_column("run")
    t.add_column("with lemmas", justify="right")
    t.add_column("--no-lemmas", justify="right")
    on: list[float] = []
    off: list[float] = []
    for n in range(repeat):
        row = [str(n + 1)]
        verdicts = []
        for extra, times in (([], on), (["--no-lemmas"], off)):
            dt, doc = run(["-d", str(depth), *extra], timeout)
            row.append(fmt(dt, timeout))
            if dt is not None:
                times.append(dt)
            verdicts.append(None if doc is None else {
                rev: {i: (v["status"], v["depth"]) for i, v in r["verdicts"].items()}
                for rev, r in doc["revisions"].items()})
        if verdicts[0] != verdicts[1]:
            raise SystemExit(f"run {n + 1}: the verdicts differ with and without the lemmas")
        t.add_row(*row)
    if on and off:
        a, b = statistics.median(on), statistics.median(off)
        t.add_row("median", fmt(a), fmt(b))
        t.add_row("ratio", f"{a / b:.2f}", "1.00")
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="4,6,8")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell (median reported)")
    ap.add_argument("--per-invariant", action="store_true")
    ap.add_argument("--invariant-depth", type=int, default=4)
    ap.add_argument("--mutant-depth", type=int, default=8, help="0: skip the mutant table")
    ap.add_argument("--scaling", action="store_true",
                    help="only the per-invariant/total table at --scaling-depths")
    ap.add_argument("--scaling-depths", default="10,20,30")
    ap.add_argument("--lemmas", action="store_true",
                    help="only the with/without stored lemmas table (default depth 8, "
                         "--repeat runs each)")
    ap.add_argument("--cell-timeout", type=float, default=120.0,
                    help="seconds per cell of the --scaling table")
    a = ap.parse_args()
    console = Console()
    depths = [int(d) for d in a.depths.split(",") if d]  # --depths "" skips this table
    from model.actions import model_for
    from model.invariants import INVARIANTS
    from model.state import Config
    from model.vocab import MUTANTS

    nvars = len(model_for(Config()).layout.vars)
    if a.lemmas:
        lemmas_ab(console, 8, max(a.repeat, 1), a.timeout)
        return
    if a.scaling:
        scaling(console, [int(d) for d in a.scaling_depths.split(",") if d], a.cell_timeout,
                nvars)
        return
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
            row.append(fmt(statistics.median(ok)) if len(ok) == len(times)
                       else fmt(None, a.timeout))
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
                                      a.timeout)[0], a.timeout)
                          for rev in ("baseline", "rfd486")])
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
                row += [fmt(dt, a.timeout), depth]
            tm.add_row(*row)
        console.print(tm)


if __name__ == "__main__":
    main()
