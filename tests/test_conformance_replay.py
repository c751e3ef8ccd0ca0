"""Conformance replay on SQLite: a small generated suite replays without a mismatch, and a
defect switched on in the implementation alone is reported at the step where it shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from conformance.generate import generate_suite, walk_from_labels, write_suite, write_walk
from conformance.replay import replay_trace
from conformance.scenarios import STALE_REPORT
from lifecycle.cli import app
from model.state import Config
from model.trace import load_itf


@pytest.fixture(scope="module", params=["baseline", "rfd486"])
def suite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    cfg = Config(revision=request.param)
    out = tmp_path_factory.mktemp(f"suite-{request.param}")
    return write_suite(generate_suite(cfg, seed=1, walks=15, last_mile=False), out, seed=1)


def test_generated_suite_replays_on_sqlite(suite: list[Path]) -> None:
    assert len(suite) >= 3
    total = 0
    for p in suite:
        res = replay_trace(load_itf(p), str(p))
        assert res.mismatch is None, res.mismatch.render()
        total += res.steps
    assert total >= 50


def test_generation_is_reproducible() -> None:
    a = generate_suite(Config(), seed=3, walks=6)
    b = generate_suite(Config(), seed=3, walks=6)
    assert [w.labels for w in a.walks] == [w.labels for w in b.walks]
    assert a.walks, "a few walks always cover something new"


def test_stale_report_replays_clean(tmp_path: Path) -> None:
    cfg = Config()
    p = write_walk(tmp_path / "stale.itf.json", cfg, walk_from_labels(cfg, STALE_REPORT), "t")
    res = replay_trace(load_itf(p), str(p))
    assert res.ok, res.mismatch and res.mismatch.render()
    assert res.steps == len(STALE_REPORT)


def test_impl_defect_is_reported_at_its_step(tmp_path: Path) -> None:
    cfg = Config()
    p = write_walk(tmp_path / "stale.itf.json", cfg, walk_from_labels(cfg, STALE_REPORT), "t")
    res = replay_trace(load_itf(p), str(p), impl_mutants=("reports-ignore-generation",))
    mm = res.mismatch
    assert mm is not None
    assert mm.step == len(STALE_REPORT)
    assert mm.label == "sled-agent.deliver_report(vmm=0, keep=0, update=none)"
    assert "v_state.0" in mm.diff and "v_gen.0" in mm.diff
    assert "--impl-mutant reports-ignore-generation" in mm.rerun
    assert "v_state.0: model STOPPING  impl RUNNING" in mm.render()


def test_cli_exit_codes(tmp_path: Path) -> None:
    cfg = Config()
    p = write_walk(tmp_path / "stale.itf.json", cfg, walk_from_labels(cfg, STALE_REPORT), "t")
    runner = CliRunner()
    ok = runner.invoke(app, ["traces", "replay", str(p)])
    assert ok.exit_code == 0, ok.output
    assert "1/1 traces replayed without mismatch" in ok.output
    bad = runner.invoke(app, ["traces", "replay", str(p), "--impl-mutant",
                              "reports-ignore-generation"])
    assert bad.exit_code == 1
    assert "MISMATCH" in bad.output and "rerun: lifecycle traces replay" in bad.output
    broken = tmp_path / "broken.itf.json"
    broken.write_text("{\"states\": 3}")
    res = runner.invoke(app, ["traces", "replay", str(broken)])
    assert res.exit_code == 2
    assert "not an ITF trace" in res.output
    res = runner.invoke(app, ["traces", "replay", str(p), "--impl-mutant", "nope"])
    assert res.exit_code == 2


def test_cli_generate(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["traces", "generate", "--revision", "rfd486", "--out",
                                   str(tmp_path), "--walks", "5", "--no-last-mile",
                                   "--no-z3"])
    assert res.exit_code == 0, res.output
    assert "model actions: covered" in res.output
    assert "goals proven unreachable: 0 (--no-z3)" in res.output
    assert (tmp_path / "goals.json").exists()
    assert list(tmp_path.glob("rfd486-*.itf.json"))
    bad = CliRunner().invoke(app, ["traces", "generate", "--revision", "nope", "--out",
                                   str(tmp_path)])
    assert bad.exit_code == 2


def test_become_updater_on_a_deleted_instance_replays_clean() -> None:
    """Found by the lockstep machine: an update saga's child inherits the lock after the
    instance was deleted. SPEC §5 says AlreadyLocked (the parent finishes, §4.6); the
    implementation used to raise another error and unwind the parent."""
    path = Path(__file__).parent / "traces" / "become-updater-on-deleted-instance.itf.json"
    res = replay_trace(load_itf(path), str(path))
    assert res.mismatch is None, res.mismatch.render()
    assert res.steps == 31


def test_replay_measures_impl_branch_coverage(tmp_path: Path) -> None:
    """`traces replay --impl-coverage` (a fresh process: coverage starts before impl/ is
    imported) reports per-file statement and branch counts of impl/."""
    import json
    import subprocess
    import sys

    trace = Path(__file__).parent / "traces" / "become-updater-on-deleted-instance.itf.json"
    out = tmp_path / "cov.json"
    res = subprocess.run([sys.executable, "-m", "lifecycle.cli", "traces", "replay", str(trace),
                          "--impl-coverage", str(out)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "impl/ branch coverage:" in res.stdout
    doc = json.loads(out.read_text())
    files = doc["files"]
    assert 0 < doc["branch_coverage_percent"] < doc["protocol_branch_coverage_percent"] < 100
    upd = files["sagas/instance_update.py"]
    assert upd["missed_statements"] < upd["statements"]  # the update saga ran
    free = files["nexus/free_running.py"]
    assert free["missed_statements"] > 0.8 * free["statements"]  # the replica threads did not
    assert "free_run.py" not in files  # the stress driver is not implementation code
    # which lines and branches were missed, so a reader can see what the suite never ran
    assert len(free["missing_lines"]) == free["missed_statements"]
    assert len(free["missing_branches"]) == free["missed_branches"]
    assert len(upd["missing_lines"]) == upd["missed_statements"]
    assert all(len(b) == 2 for b in upd["missing_branches"])
