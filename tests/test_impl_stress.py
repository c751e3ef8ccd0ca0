"""Bounded stress run (slow): 2 Nexus replicas with threads on PostgreSQL, 50 instances,
random start/stop/reboot/migrate/delete with crashes and report faults, fixed seed and op
count; once background tasks have run, the database invariants hold."""

from __future__ import annotations

import pytest

from impl.free_run import FreeRun
from impl.testing import PG_SKIP_REASON, backend, controller, pg_url, stopped_instance
from model.vocab import InstanceState

N_INSTANCES = 50
N_OPS = 400


def _stress(kind: str, revision: str, seed: int) -> None:
    ctl = controller(backend(kind), revision, nexus_ids=("nexus-0", "nexus-1"),
                     sled_ids=("sled-0", "sled-1", "sled-2", "sled-3"), seed=seed)
    try:
        ids = [stopped_instance(ctl, f"inst-{k}") for k in range(N_INSTANCES)]
        run = FreeRun(ctl, seed=seed)
        run.start()
        run.random_operations(ids, N_OPS)
        run.quiesce()
        # rfd486 finding F4 (docs/findings.md): a free run can leave an instance behind an
        # update saga whose node panics on every recovery; it keeps its lock by design
        stuck_by_f4 = ctl.stuck_instances()
        assert not stuck_by_f4 or revision == "rfd486", (stuck_by_f4, run.stats)
        excused = set(stuck_by_f4) | {v.id for v in ctl.datastore.vmm_list(include_deleted=True)
                                       if v.instance_id in stuck_by_f4}
        violations = [v for v in ctl.quiescent_violations()
                      if not any(x in v for x in excused)]
        assert violations == [], (violations, run.stats)
        assert sum(n.crashes for n in ctl.nexuses.values()) > 0, run.stats
        assert run.stats["report_drop"] + run.stats["report_duplicate"] > 0, run.stats
        live = ctl.datastore.instance_list()
        assert all(i.updater_id is None for i in live if i.id not in stuck_by_f4)
        stuck = [s for s in ctl.datastore.saga_list() if s.state == "stuck"]
        assert stuck == []
        assert any(i.state == InstanceState.VMM for i in live) or len(live) < N_INSTANCES
    finally:
        ctl.close(drop_schema=True)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_stress_two_replicas_postgres(revision: str) -> None:
    if pg_url() is None:
        pytest.skip(PG_SKIP_REASON)
    _stress("postgres", revision, seed=7)


@pytest.mark.slow
def test_stress_two_replicas_sqlite() -> None:
    _stress("sqlite", "rfd486", seed=11)
