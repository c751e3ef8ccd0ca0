"""Conformance replay on PostgreSQL (needs LIFECYCLE_PG_URL; each replay uses its own schema)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.generate import generate_suite, walk_from_labels, write_suite, write_walk
from conformance.impl_fixtures import PG_SKIP_REASON, backend, pg_url
from conformance.replay import ReplayResult, replay_trace
from conformance.scenarios import STALE_REPORT
from model.state import Config
from model.trace import load_itf

pytestmark = pytest.mark.skipif(pg_url() is None, reason=PG_SKIP_REASON)


def _replay(p: Path, mutants: tuple[str, ...] | None = None) -> ReplayResult:
    b = backend("postgres")
    return replay_trace(load_itf(p), str(p), b.url, b.pg_schema, mutants)


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_generated_suite_replays_on_postgres(revision: str, tmp_path: Path) -> None:
    paths = write_suite(generate_suite(Config(revision=revision), seed=2, walks=6,
                                      last_mile=False), tmp_path, 2)
    assert paths
    for p in paths:
        res = _replay(p)
        assert res.ok, res.mismatch and res.mismatch.render()
        assert res.steps > 0


def test_impl_defect_detected_on_postgres(tmp_path: Path) -> None:
    cfg = Config()
    p = write_walk(tmp_path / "stale.itf.json", cfg, walk_from_labels(cfg, STALE_REPORT), "t")
    assert _replay(p).ok
    mm = _replay(p, ("reports-ignore-generation",)).mismatch
    assert mm is not None and mm.step == len(STALE_REPORT)
    assert "--db postgresql" in mm.rerun


def test_replay_history_validates_on_postgres() -> None:
    """The recorder serializes PostgreSQL transactions too, so its history validates."""
    from conformance.replay_history import replay_with_history

    p = Path(__file__).parent / "traces" / "update-saga-panics.itf.json"
    b = backend("postgres")
    chk = replay_with_history(load_itf(p), str(p), b.url, b.pg_schema)
    assert chk.ok, chk.mismatch() and chk.mismatch().render()  # type: ignore[union-attr]
    assert chk.history is not None and chk.history.steps > 0


def test_conformance_command_on_postgres(tmp_path: Path) -> None:
    """`lifecycle conformance --db` on PostgreSQL: replays, replay histories, stress history."""
    import json

    from typer.testing import CliRunner

    from lifecycle.cli import app

    js = tmp_path / "c.json"
    url = pg_url()
    assert url is not None
    res = CliRunner().invoke(app, ["conformance", "--revision", "rfd486", "--db", url,
                                   "--walks", "4", "--no-last-mile", "--no-teeth",
                                   "--stress-ops", "60", "--out", str(tmp_path / "t"),
                                   "--json", str(js)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    [rep] = json.loads(js.read_text())
    assert rep["traces"] >= 1 and rep["mismatches"] == {}
    assert rep["replay_histories"]["events"] > 0 and rep["replay_histories"]["unexplained"] == {}
    assert rep["stress_history"]["events"] > 0 and rep["stress_history"]["unexplained"] is None
