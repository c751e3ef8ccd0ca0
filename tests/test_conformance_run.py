"""`lifecycle conformance`: one small run with its JSON and JUnit reports."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

from typer.testing import CliRunner

from lifecycle.cli import app
from model.vocab import MUTANTS


def test_conformance_command_reports(tmp_path: Path) -> None:
    js, xml = tmp_path / "c.json", tmp_path / "c.xml"
    res = CliRunner().invoke(app, ["conformance", "--revision", "baseline", "--walks", "4",
                                   "--out", str(tmp_path / "traces"), "--json", str(js),
                                   "--junit", str(xml), "--no-last-mile"])
    assert res.exit_code in (0, 1), res.output
    [rep] = json.loads(js.read_text())
    assert rep["revision"] == "baseline" and rep["traces"] >= 1 and rep["steps"] > 0
    assert rep["mismatches"] == {}
    # the paths of the opt-in fault classes are replayed too (a stuck start saga: 9 steps)
    assert {Path(p).name: n for p, n in rep["opt_in_traces"].items()} == {
        "opt-in-start-undo-unhealthy.itf.json": 9}
    assert "opt-in fault-class paths replayed: 1 traces, 9 steps, 0 mismatches" in res.output
    # the implementation's own histories: of every replay, and of one stress run
    hist = rep["replay_histories"]
    assert hist["traces"] == rep["traces"] and hist["events"] > 0 and hist["unexplained"] == {}
    stress = rep["stress_history"]
    assert stress["seed"] == 0 and stress["events"] > 0 and stress["unexplained"] is None
    # free runs driven by the suite's traces (six by default, fewer if the suite is smaller)
    runs = rep["trace_free_runs"]
    assert len(runs) == min(6, rep["traces"]) and all(r["failure"] is None for r in runs)
    assert all(r["events"] > 0 and r["steps"] > 0 for r in runs)
    in_impl = {m for m, mu in MUTANTS.items() if mu.in_impl}
    assert set(rep["mutants_detected"]) | set(rep["mutants_missed"]) == in_impl
    assert res.exit_code == (1 if rep["mutants_missed"] else 0)
    suites = ET.parse(xml).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["conformance.baseline"]
    assert int(suites[0].get("failures") or 0) == len(rep["mutants_missed"])
    names = [c.get("name") for c in suites[0].findall("testcase")]
    assert f"histories of {rep['traces']} replays" in names and "stress history (seed 0)" in names
    assert sum(1 for n in names if n and n.startswith("trace-driven free run of ")) == len(runs)
    assert "defects detected" in res.output


def test_conformance_command_bad_usage() -> None:
    res = CliRunner().invoke(app, ["conformance", "--revision", "nope"])
    assert res.exit_code == 2


def _stored_suite(folder: Path, revision: str = "baseline") -> Path:
    """A small stored suite, laid out as `lifecycle traces generate --out DIR/<revision>`
    writes it: two directed paths and their manifest."""
    from conformance.generate import walk_from_labels, write_walk
    from conformance.scenarios import DIRECTED
    from model.state import Config

    cfg = Config(revision=revision)
    out = folder / revision
    out.mkdir(parents=True)
    names = []
    for name in ("stale-report", "start-race"):
        p = write_walk(out / f"{name}.itf.json", cfg, walk_from_labels(cfg, DIRECTED[name]),
                       name)
        names.append(p.name)
    (out / "goals.json").write_text(json.dumps({"revision": revision, "mutants": [],
                                                "traces": names, "categories": {},
                                                "undecided": {}}))
    return folder


def test_conformance_replays_a_stored_suite(tmp_path: Path) -> None:
    """`--suite DIR`: the suite `traces generate` stored (with Z3's coverage goals) is
    replayed instead of a generated walk-only one; coverage is computed from its traces."""
    suite = _stored_suite(tmp_path / "suite")
    js = tmp_path / "c.json"
    res = CliRunner().invoke(app, ["conformance", "-r", "baseline", "--suite", str(suite),
                                   "--out", str(tmp_path / "out"), "--json", str(js),
                                   "--no-teeth", "--stress-ops", "0"])
    assert res.exit_code == 0, res.output
    [rep] = json.loads(js.read_text())
    assert rep["traces"] == 2 and rep["mismatches"] == {}
    steps = sum(len(json.loads(p.read_text())["#meta"]["actions"])
                for p in (suite / "baseline").glob("*.itf.json"))
    assert rep["steps"] == steps
    assert rep["replay_histories"]["traces"] == 2
    assert "pair:STARTING/STARTING" in rep["pairs"]  # computed from the traces


def test_conformance_refuses_a_suite_it_cannot_use(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["conformance", "-r", "baseline", "--suite", str(tmp_path)])
    assert res.exit_code == 2 and "no suite here" in res.output
    suite = _stored_suite(tmp_path / "s")
    res = runner.invoke(app, ["conformance", "-r", "rfd486", "--suite", str(suite)])
    assert res.exit_code == 2  # there is no rfd486 suite in it
    (suite / "rfd486").mkdir()
    (suite / "rfd486" / "goals.json").write_text(
        (suite / "baseline" / "goals.json").read_text())
    res = runner.invoke(app, ["conformance", "-r", "rfd486", "--suite", str(suite)])
    assert res.exit_code == 2 and "not of 'rfd486'" in res.output
    trace = suite / "baseline" / "start-race.itf.json"
    doc = json.loads(trace.read_text())
    doc["#meta"]["model-revision"] = "lifecycle-model/1"
    trace.write_text(json.dumps(doc))
    res = runner.invoke(app, ["conformance", "-r", "baseline", "--suite", str(suite)])
    assert res.exit_code == 2 and "regenerate the trace" in res.output
