"""A free run (conformance/free_run.py) with history recording on, for validation tests and benches.

`python -m conformance.history_run OUT.jsonl [--db URL] [--revision R] [--mutant M] [--seed N]
[--instances N] [--ops N]` records one; `lifecycle validate OUT.jsonl` checks it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from conformance.free_run import FreeRun
from conformance.impl_fixtures import Backend, controller, stopped_instance
from impl.history import HistoryRecorder

VMM_BOUND = 6  # conformance/validate.py MAX_SLOTS (impl/ does not import conformance/)
FAST_PERIODS = {"instance_updater": 0.05, "abandoned_vmm_reaper": 0.1, "instance_watcher": 0.07}


def record_free_run(path: str | Path, backend: Backend, revision: str = "baseline",
                    mutants: Iterable[str] = (), seed: int = 1, instances: int = 4,
                    ops: int = 150, drain_seconds: float = 0.5) -> tuple[int, Counter[str]]:
    """Run `ops` random requests on `instances` instances with two replicas, threads and
    faults, recording the history to `path`; returns (events recorded, run statistics)."""
    ctl = controller(backend, revision, mutants, nexus_ids=("nexus-0", "nexus-1"),
                     sled_ids=("sled-0", "sled-1", "sled-2"), seed=seed)
    rec = HistoryRecorder(path).attach(ctl.datastore)
    try:
        ids = [stopped_instance(ctl, f"inst-{k}") for k in range(instances)]
        # at most MAX_SLOTS VMM records per instance, the most one validated step may show
        run = FreeRun(ctl, seed=seed, periods=FAST_PERIODS, max_vmms_per_instance=VMM_BOUND)
        run.start()
        run.random_operations(ids, ops)
        run.quiesce(drain_seconds=drain_seconds)
        return rec.events, run.stats
    finally:
        rec.detach(ctl.datastore)
        ctl.close(drop_schema=True)


def main(argv: list[str] | None = None) -> None:
    import argparse

    from conformance.impl_fixtures import unique_schema

    ap = argparse.ArgumentParser(prog="python -m conformance.history_run")
    ap.add_argument("out")
    ap.add_argument("--db", default="sqlite://")
    ap.add_argument("--revision", default="baseline")
    ap.add_argument("--mutant", action="append", default=[])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--ops", type=int, default=150)
    a = ap.parse_args(argv)
    be = Backend(a.db, None if a.db.startswith("sqlite") else unique_schema("lc_history"))
    n, stats = record_free_run(a.out, be, a.revision, a.mutant, a.seed, a.instances, a.ops)
    print(f"{a.out}: {n} events; run statistics {dict(stats)}")


if __name__ == "__main__":
    main()
