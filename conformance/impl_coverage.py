"""Branch coverage of `impl/` reached by replaying the conformance suite (coverage.py).

`measure()` wraps the replay: coverage.py traces `impl/` with branch coverage while the
traces run, and the result says, per file and in total, how many statements and branches
the suite reached. Two totals are reported: all of `impl/`, and the protocol code alone,
which leaves out the two modules a plain trace replay cannot reach by design (`NOT_PROTOCOL`:
each replica's runner threads, which only a free run starts, and the history recorder,
which replays run in their second pass). `lifecycle conformance --impl-coverage` measures the
whole conformance run instead: replays, the histories recorded while replaying, the stress
run and, with teeth, the replays with implementation defects on.

What drives the implementation from outside is not in `impl/` and is not measured: the
stress driver and its history run (`conformance/free_run.py`, `conformance/history_run.py`),
the test fixtures (`conformance/impl_fixtures.py`) and the scripted demo
(`lifecycle/demo_cmd.py`).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

IMPL = Path(__file__).resolve().parent.parent / "impl"
NOT_PROTOCOL = ("free_running.py", "history.py")


@dataclass(frozen=True)
class FileCoverage:
    path: str  # relative to impl/
    statements: int
    missed_statements: int
    branches: int
    missed_branches: int
    missing_lines: tuple[int, ...] = ()  # statements never run
    missing_branches: tuple[tuple[int, int], ...] = ()  # (from line, to line); -1: exit

    @property
    def covered(self) -> int:
        return (self.statements - self.missed_statements) + (self.branches - self.missed_branches)

    @property
    def total(self) -> int:
        return self.statements + self.branches


def percent(files: list[FileCoverage]) -> float:
    """coverage.py's branch-coverage percentage: covered statements and branches over all."""
    total = sum(f.total for f in files)
    return 100.0 * sum(f.covered for f in files) / total if total else 100.0


@dataclass
class ImplCoverage:
    files: list[FileCoverage] = field(default_factory=list)

    @property
    def protocol_files(self) -> list[FileCoverage]:
        return [f for f in self.files if Path(f.path).name not in NOT_PROTOCOL]

    @property
    def total_percent(self) -> float:
        return percent(self.files)

    @property
    def protocol_percent(self) -> float:
        return percent(self.protocol_files)

    def as_json(self) -> dict[str, object]:
        return {
            "impl_digest": impl_digest(),
            "branch_coverage_percent": round(self.total_percent, 2),
            "protocol_branch_coverage_percent": round(self.protocol_percent, 2),
            "not_protocol": list(NOT_PROTOCOL),
            "files": {f.path: {"statements": f.statements, "missed_statements":
                               f.missed_statements, "branches": f.branches,
                               "missed_branches": f.missed_branches,
                               "missing_lines": list(f.missing_lines),
                               "missing_branches": [list(b) for b in f.missing_branches]}
                      for f in self.files},
        }


def impl_digest() -> str:
    """A digest of the source of `impl/` (every .py file, by path and content): two reports
    can be combined only if they measured the same code."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(IMPL.rglob("*.py")):
        h.update(str(f.relative_to(IMPL)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


class CoverageReportError(ValueError):
    """A report that cannot be read or combined (malformed, or measured other code)."""


def load_report(path: Path) -> ImplCoverage:
    """An `--impl-coverage` JSON report, checked against the code of `impl/` as it is now."""
    try:
        doc = json.loads(path.read_text())
        files = doc["files"]
        digest = doc["impl_digest"]
        out = ImplCoverage([FileCoverage(
            name, int(e["statements"]), int(e["missed_statements"]), int(e["branches"]),
            int(e["missed_branches"]), tuple(int(x) for x in e["missing_lines"]),
            tuple((int(a), int(b)) for a, b in e["missing_branches"]))
            for name, e in sorted(files.items())])
    except OSError as e:
        raise CoverageReportError(f"{path}: cannot read: {e.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CoverageReportError(f"{path}: not an --impl-coverage report ({e!r})") from None
    here = impl_digest()
    if digest != here:
        raise CoverageReportError(
            f"{path}: stale report: it measured impl/ at digest {digest}, the code here is "
            f"{here}; measure again")
    return out


def union(reports: list[ImplCoverage]) -> ImplCoverage:
    """What any of the reports reached: a line or branch is missed only if every report
    missed it. The reports must have measured the same files (`load_report` checks that
    they measured this code)."""
    if not reports:
        raise CoverageReportError("no report to combine")
    others = [{g.path: g for g in r.files} for r in reports[1:]]
    out = []
    for f in reports[0].files:
        path = f.path
        missing_lines = set(f.missing_lines)
        missing_branches = set(f.missing_branches)
        for files in others:
            g = files.get(path)
            if g is None or (g.statements, g.branches) != (f.statements, f.branches):
                raise CoverageReportError(f"the reports measured {path} differently")
            missing_lines &= set(g.missing_lines)
            missing_branches &= set(g.missing_branches)
        out.append(FileCoverage(path, f.statements, len(missing_lines), f.branches,
                                len(missing_branches), tuple(sorted(missing_lines)),
                                tuple(sorted(missing_branches))))
    return ImplCoverage(out)


class CoverageUnavailable(RuntimeError):
    """`impl/` was imported before measuring could start."""


def measuring(on: bool) -> AbstractContextManager[ImplCoverage]:
    """`measure()` when `on`, else a block that measures nothing (an empty result). Raises
    `CoverageUnavailable` at once when measuring cannot start."""
    if not on:
        return nullcontext(ImplCoverage())
    _check_fresh()
    return measure()


def _check_fresh() -> None:
    if any(m == "impl" or m.startswith("impl.") for m in sys.modules):
        raise CoverageUnavailable("impl/ is already imported in this process; measuring its "
                                  "coverage needs a fresh process")


@contextmanager
def measure() -> Iterator[ImplCoverage]:
    """Trace `impl/` with branch coverage inside the block; the yielded object is filled in
    when the block ends. `impl/` must not be imported yet: its module-level lines (imports,
    class and function definitions) would otherwise count as missed."""
    import coverage

    _check_fresh()

    cov = coverage.Coverage(branch=True, source=[str(IMPL)], data_file=None)
    result = ImplCoverage()
    cov.start()
    try:
        yield result
    finally:
        cov.stop()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "coverage.json"
            cov.json_report(outfile=str(out), show_contexts=False)
            doc = json.loads(out.read_text())
        for path, entry in sorted(doc["files"].items()):
            summ = entry["summary"]
            result.files.append(FileCoverage(
                str(Path(path).resolve().relative_to(IMPL)), summ["num_statements"],
                summ["missing_lines"], summ["num_branches"], summ["missing_branches"],
                tuple(entry.get("missing_lines", ())),
                tuple((a, b) for a, b in entry.get("missing_branches", ()))))
