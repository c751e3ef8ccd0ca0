"""Benchmark of the explicit-state explorer (model/explore.py): distinct states, transitions,
seconds and distinct states per second for each revision at the explorer's bounds.

    .venv/bin/python bench/explore.py                  # default depth, 1 run per revision
    .venv/bin/python bench/explore.py --depth 4 --repeat 3

With --repeat N every revision is explored N times and the median time is reported (the
state and transition counts never vary).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.explore import (  # noqa: E402
    DEFAULT_DEPTH,
    DEFAULT_MAX_STATES,
    EXPLORER_BOUNDS,
    explore,
    explorer_config,
)
from model.vocab import REVISIONS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=DEFAULT_DEPTH)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--max-states", type=int, default=DEFAULT_MAX_STATES)
    ap.add_argument("--revision", action="append", choices=sorted(REVISIONS))
    args = ap.parse_args()
    bounds = ", ".join(f"{k}={v}" for k, v in EXPLORER_BOUNDS.items())
    t = Table(title=f"explorer: depth {args.depth} from the seeds; {bounds}; "
                    f"median of {args.repeat} run(s)")
    for col in ("revision", "states", "transitions", "seconds", "states/s"):
        t.add_column(col, justify="left" if col == "revision" else "right")
    for rev in args.revision or list(REVISIONS):
        secs = []
        states = edges = 0
        for _ in range(args.repeat):
            ex = explore(explorer_config(rev), args.depth, args.max_states)
            secs.append(ex.seconds)
            states, edges = ex.states, ex.edges
        med = statistics.median(secs)
        t.add_row(rev, str(states), str(edges), f"{med:.1f}", f"{states / med:.0f}")
    Console().print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
