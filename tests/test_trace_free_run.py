"""Free runs driven by generated traces (conformance/trace_free_run.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from conformance.impl_fixtures import PG_SKIP_REASON, Backend, pg_url, unique_schema
from conformance.trace_free_run import free_run_trace, pick, script_of
from impl.executor.dag import Outcome
from lifecycle.cli import app
from model.trace import load_itf

TRACES = Path(__file__).parent / "traces"
# a baseline trace with ten saga crashes and two failures: migrate, update and delete sagas
CRASHY = TRACES / "report-names-deleted-migration.itf.json"


def test_script_of_a_trace() -> None:
    s = script_of(load_itf(CRASHY))
    assert s.requests == ["start", "migrate", "migrate", "stop", "stop", "delete"]
    assert s.crashes == {}
    assert [(f.saga, f.nodes, f.direction, f.outcome) for f in s.faults[:4]] == [
        ("instance-migrate", ("dst_sled_id",), "forward", Outcome.CRASH_AFTER),
        ("start-instance-update", ("updater_lock",), "forward", Outcome.FAIL_BEFORE),
        ("start-instance-update", ("updater_lock",), "forward", Outcome.CRASH_AFTER),
        ("instance-update", ("updater_lock",), "forward", Outcome.FAIL_BEFORE),
    ]
    assert len(s.faults) == 11
    # a group of several implementation nodes: a failure hits its first, a crash its last
    panics = script_of(load_itf(TRACES / "update-saga-panics.itf.json"))
    assert [(f.saga, f.nodes, f.outcome) for f in panics.faults] == [
        ("instance-update", ("commit_instance_updates",), Outcome.CRASH_AFTER)]


def test_pick_prefers_traces_with_more_distinct_faults() -> None:
    traces = [(p.name, load_itf(p)) for p in sorted(TRACES.glob("*.itf.json"))]
    assert [p for p, _ in pick(traces, 2)] == ["report-names-deleted-migration.itf.json",
                                                "become-updater-on-deleted-instance.itf.json"]
    assert len(pick(traces, 100)) == len(traces)


def test_a_crashy_trace_runs_free_and_its_history_is_explained() -> None:
    res = free_run_trace(load_itf(CRASHY), str(CRASHY), Backend("sqlite://", None), seed=0)
    assert res.ok, res.failure
    assert res.requests == 6 and res.faults == 11
    assert res.fired >= 1  # the threads take their own path: not every fault is reached
    assert res.events > 0 and res.steps > 0 and res.kept == ""


def test_a_defect_makes_the_free_run_fail_and_keeps_its_history(tmp_path: Path) -> None:
    # every update saga commits without holding the updater lock: the model's commit needs it
    res = free_run_trace(load_itf(CRASHY), str(CRASHY), Backend("sqlite://", None), seed=0,
                         mutants=("no-updater-lock",))
    assert not res.ok and "not a transition of the model" in res.failure, res.failure
    assert res.kept and Path(res.kept).exists()
    out = CliRunner().invoke(app, ["validate", res.kept])
    assert out.exit_code == 1 and "unexplained" in out.output, out.output


@pytest.mark.skipif(pg_url() is None, reason=PG_SKIP_REASON)
def test_a_trace_runs_free_on_postgres() -> None:
    url = pg_url()
    assert url is not None
    res = free_run_trace(load_itf(CRASHY), str(CRASHY), Backend(url, unique_schema("lc_tfr")),
                         seed=0)
    assert res.ok, res.failure
    assert res.events > 0 and res.steps > 0
