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
    in_impl = {m for m, mu in MUTANTS.items() if mu.in_impl}
    assert set(rep["mutants_detected"]) | set(rep["mutants_missed"]) == in_impl
    assert res.exit_code == (1 if rep["mutants_missed"] else 0)
    suites = ET.parse(xml).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["conformance.baseline"]
    assert int(suites[0].get("failures") or 0) == len(rep["mutants_missed"])
    names = [c.get("name") for c in suites[0].findall("testcase")]
    assert f"histories of {rep['traces']} replays" in names and "stress history (seed 0)" in names
    assert "defects detected" in res.output


def test_conformance_command_bad_usage() -> None:
    res = CliRunner().invoke(app, ["conformance", "--revision", "nope"])
    assert res.exit_code == 2
