"""A whole conformance run (issue 4, part 7): generate, replay, and check the suite's teeth.

For each protocol revision: generate the suite, replay every trace against the
implementation, then replay it once per defect the implementation has (switched on in the
implementation only) and record the first trace and step that catches it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from model.actions import model_for
from model.state import Config
from model.trace import LoadedTrace, load_itf
from model.vocab import MUTANTS

from .generate import generate_suite, write_suite
from .replay import Mismatch, ReplayResult, replay_trace

Schema = Callable[[], str | None]


@dataclass
class RevisionReport:
    revision: str
    traces: int = 0
    steps: int = 0
    seconds: float = 0.0
    actions: tuple[int, int] = (0, 0)
    pairs: list[str] = field(default_factory=list)
    mismatches: dict[str, Mismatch] = field(default_factory=dict)
    detected: dict[str, tuple[str, Mismatch]] = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.missed

    def to_json(self) -> dict[str, object]:
        return {
            "revision": self.revision,
            "traces": self.traces,
            "steps": self.steps,
            "steps_per_second": round(self.steps / self.seconds) if self.seconds else None,
            "actions_covered": self.actions[0],
            "actions_total": self.actions[1],
            "pairs": self.pairs,
            "mismatches": {p: m.render() for p, m in self.mismatches.items()},
            "mutants_detected": {m: {"trace": p, "step": mm.step, "action": mm.label}
                                 for m, (p, mm) in self.detected.items()},
            "mutants_missed": self.missed,
        }


def run_revision(revision: str, out: Path, db_url: str, schema: Schema, walks: int, seed: int,
                 teeth: bool = True, last_mile: bool = True) -> RevisionReport:
    cfg = Config(revision=revision)
    suite = generate_suite(cfg, seed=seed, walks=walks, last_mile=last_mile)
    paths = write_suite(suite, out / revision, seed)
    rep = RevisionReport(revision, len(paths), actions=suite.action_coverage(model_for(cfg)),
                         pairs=suite.pairs())
    traces: list[tuple[str, LoadedTrace]] = [(str(p), load_itf(p)) for p in paths]

    def replay(p: str, tr: LoadedTrace, mutants: tuple[str, ...] | None) -> ReplayResult:
        return replay_trace(tr, p, db_url, schema(), mutants)

    t0 = time.perf_counter()
    for p, tr in traces:
        res = replay(p, tr, None)
        rep.steps += res.steps
        if res.mismatch is not None:
            rep.mismatches[p] = res.mismatch
    rep.seconds = time.perf_counter() - t0
    if teeth:
        for m in sorted(k for k, mu in MUTANTS.items() if mu.in_impl):
            for p, tr in traces:
                res = replay(p, tr, (m,))
                if res.mismatch is not None:
                    rep.detected[m] = (p, res.mismatch)
                    break
            else:
                rep.missed.append(m)
    return rep


def write_json(path: Path, reports: list[RevisionReport]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.to_json() for r in reports], indent=1) + "\n")


def write_junit(path: Path, reports: list[RevisionReport]) -> None:
    """One test suite per revision: a test case per trace and per defect."""
    root = ET.Element("testsuites", name="conformance")
    for r in reports:
        cases: list[tuple[str, str | None]] = []
        for name, mm in r.mismatches.items():
            cases.append((f"replay {name}", mm.render()))
        cases.append((f"replay of {r.traces} traces", None))
        for m in sorted(r.detected):
            cases.append((f"teeth {m}", None))
        for m in r.missed:
            cases.append((f"teeth {m}", f"defect {m} is not detected by any trace"))
        suite = ET.SubElement(root, "testsuite", name=f"conformance.{r.revision}",
                              tests=str(len(cases)),
                              failures=str(sum(1 for _, f in cases if f)))
        for name, failure in cases:
            case = ET.SubElement(suite, "testcase", classname=f"conformance.{r.revision}",
                                 name=name)
            if failure:
                ET.SubElement(case, "failure", message=failure.splitlines()[0]).text = failure
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="unicode", xml_declaration=True)
