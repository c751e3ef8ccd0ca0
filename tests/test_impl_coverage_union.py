"""`lifecycle traces coverage`: combining `--impl-coverage` reports (docs/conformance.md).

Each report is measured in a fresh process (coverage must start before impl/ is imported);
the union counts a statement or branch as reached if any report reached it. A report of
other code (a stale one) and a file that is no report are refused with exit status 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conformance.impl_coverage import CoverageReportError, load_report, union
from lifecycle.cli import app

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "tests" / "traces"
runner = CliRunner()


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = []
    tmp = tmp_path_factory.mktemp("cov")
    for name in ("become-updater-on-deleted-instance", "start-register-unhealthy"):
        p = tmp / f"{name}.json"
        res = subprocess.run([sys.executable, "-m", "lifecycle.cli", "traces", "replay",
                              str(TRACES / f"{name}.itf.json"), "--impl-coverage", str(p)],
                             capture_output=True, text=True, cwd=ROOT, timeout=300,
                             check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        out.append(p)
    return out


def _missed(doc: dict[str, object]) -> dict[str, set[object]]:
    files = doc["files"]
    assert isinstance(files, dict)
    return {f: {*e["missing_lines"], *map(tuple, e["missing_branches"])}
            for f, e in files.items()}


def test_the_union_misses_only_what_every_report_missed(reports: list[Path],
                                                        tmp_path: Path) -> None:
    out = tmp_path / "union.json"
    res = runner.invoke(app, ["traces", "coverage", *map(str, reports), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 reports combined" in res.output
    a, b = (json.loads(p.read_text()) for p in reports)
    u = json.loads(out.read_text())
    ma, mb, mu = _missed(a), _missed(b), _missed(u)
    assert mu == {f: ma[f] & mb[f] for f in ma}
    # the two traces reach different code, so the union reaches more than either
    assert sum(map(len, mu.values())) < min(sum(map(len, m.values())) for m in (ma, mb))
    assert u["branch_coverage_percent"] > max(a["branch_coverage_percent"],
                                              b["branch_coverage_percent"])
    assert u["impl_digest"] == a["impl_digest"]


def test_a_stale_report_is_refused(reports: list[Path], tmp_path: Path) -> None:
    doc = json.loads(reports[0].read_text())
    doc["impl_digest"] = "0" * 16
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(doc))
    with pytest.raises(CoverageReportError, match="stale report"):
        load_report(stale)
    res = runner.invoke(app, ["traces", "coverage", str(reports[1]), str(stale)])
    assert res.exit_code == 2
    assert "stale report" in res.output


def test_a_file_that_is_no_report_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"files": 3}')
    res = runner.invoke(app, ["traces", "coverage", str(bad)])
    assert res.exit_code == 2
    assert "not an --impl-coverage report" in res.output
    res = runner.invoke(app, ["traces", "coverage", str(tmp_path / "missing.json")])
    assert res.exit_code == 2
    assert "cannot read" in res.output


def test_reports_of_different_files_are_not_combined(reports: list[Path]) -> None:
    a = load_report(reports[0])
    b = load_report(reports[1])
    b.files = b.files[1:]
    with pytest.raises(CoverageReportError, match="differently"):
        union([a, b])
