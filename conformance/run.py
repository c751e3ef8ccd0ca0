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
from model.trace import LoadedTrace, TraceError, load_itf
from model.vocab import MUTANTS

from .coverage import goals_of_step
from .generate import Suite, generate_suite, walk_from_labels, write_suite, write_walk
from .replay import Mismatch, ReplayResult, replay_trace
from .replay_history import replay_with_history
from .scenarios import OPT_IN
from .trace_free_run import TraceRunResult, free_run_traces

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
    # the implementation's own histories: of every replay (conformance/replay_history.py)
    # and of one free-running stress run (conformance/history_run.py)
    histories: bool = False
    history_events: int = 0
    history_failures: dict[str, Mismatch] = field(default_factory=dict)
    stress: StressResult | None = None
    opt_in: dict[str, int] = field(default_factory=dict)  # opt-in fault-class trace -> steps
    # free runs driven by some of the suite's traces (conformance/trace_free_run.py)
    free_runs: list[TraceRunResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.mismatches and not self.missed and not self.history_failures
                and (self.stress is None or self.stress.ok)
                and all(r.ok for r in self.free_runs))

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
            "replay_histories": None if not self.histories else {
                "traces": self.traces, "events": self.history_events,
                "unexplained": {p: m.render() for p, m in self.history_failures.items()}},
            "stress_history": None if self.stress is None else self.stress.to_json(),
            "opt_in_traces": self.opt_in,
            "trace_free_runs": [r.to_json() for r in self.free_runs],
        }


@dataclass
class StressResult:
    """A free run (several replicas, threads, faults) recorded and validated."""

    seed: int
    instances: int
    ops: int
    events: int = 0
    steps: int = 0
    seconds: float = 0.0
    failure: str = ""  # the first unexplained event, rendered, or why the run failed
    kept: str = ""  # the history file, kept when validation fails

    @property
    def ok(self) -> bool:
        return not self.failure

    def to_json(self) -> dict[str, object]:
        return {"seed": self.seed, "instances": self.instances, "ops": self.ops,
                "events": self.events, "steps": self.steps, "seconds": round(self.seconds, 2),
                "unexplained": self.failure or None, "history": self.kept or None}


def stress_history(revision: str, db_url: str, schema: Schema, seed: int, instances: int,
                   ops: int) -> StressResult:
    """Record a free run of the implementation (conformance/history_run.py) on `db_url` and check
    every recorded step against the model (conformance/validate.py). On failure the history
    file is kept and named, so `lifecycle validate FILE` reruns the check."""
    import shutil
    import tempfile

    from conformance.history_run import record_free_run
    from conformance.impl_fixtures import Backend

    from .history_file import HistoryError, load
    from .replay_history import keep
    from .validate import validate

    out = StressResult(seed, instances, ops)
    tmp = Path(tempfile.mkdtemp(prefix="lc_stress_"))
    path = tmp / f"stress-{revision}-seed{seed}.history.jsonl"
    t0 = time.perf_counter()
    try:
        record_free_run(path, Backend(db_url, schema()), revision, (), seed, instances, ops)
        res = validate(load(path), revision)
        out.events, out.steps = res.events, res.steps
        if res.failure is not None:
            out.failure = res.failure.summary()
    except HistoryError as e:
        out.failure = f"the recorded history cannot be read: {e}"
    finally:
        out.seconds = time.perf_counter() - t0
        if out.failure and path.exists():
            out.kept = str(keep(path))
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class SuiteError(ValueError):
    """A stored suite (`--suite`) that cannot be used: missing, of another revision or model
    revision, or with a malformed trace."""


def load_suite(cfg: Config, folder: Path) -> tuple[Suite, list[tuple[str, LoadedTrace]]]:
    """The suite `lifecycle traces generate` wrote to `folder` for `cfg`'s revision: every
    trace its `goals.json` lists, loaded and checked against the model (a trace of another
    revision, model revision or with defects is refused). What the suite covers is computed
    again from the traces, not read from the file."""
    manifest = folder / "goals.json"
    try:
        doc = json.loads(manifest.read_text())
        names = [str(n) for n in doc["traces"]]
    except OSError:
        raise SuiteError(f"{manifest}: no suite here (write one with `lifecycle traces "
                         f"generate -r {cfg.revision} --out {folder}`)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise SuiteError(f"{manifest}: not a suite manifest ({e!r})") from None
    if doc.get("revision") != cfg.revision or doc.get("mutants"):
        raise SuiteError(f"{manifest}: a suite of {doc.get('revision')!r} with defects "
                         f"{doc.get('mutants')}, not of {cfg.revision!r} without defects")
    model = model_for(cfg)
    suite = Suite(cfg)
    traces: list[tuple[str, LoadedTrace]] = []
    for name in names:
        p = folder / name
        try:
            tr = load_itf(p)
        except TraceError as e:
            raise SuiteError(str(e)) from None
        if tr.cfg != cfg:
            raise SuiteError(f"{p}: a trace of {tr.cfg.describe()}, not of {cfg.describe()}")
        for n, lab in enumerate(tr.labels, start=1):
            for g in goals_of_step(model, lab, tr.states[n]):
                suite.covered.setdefault(g, len(traces))
        traces.append((str(p), tr))
    return suite, traces


Stored = tuple[Suite, list[tuple[str, LoadedTrace]]]  # a suite as `load_suite` returns it


def run_revision(revision: str, out: Path, db_url: str, schema: Schema, walks: int, seed: int,
                 teeth: bool = True, last_mile: bool = True, histories: bool = True,
                 stress_instances: int = 6, stress_ops: int = 400,
                 stored: Stored | None = None, free_runs: int = 0) -> RevisionReport:
    """Generate the revision's suite (or take the `stored` one, from `load_suite`) and
    replay it; with `histories`, replay it once more with the
    implementation's history recorder on and validate every recorded history, and validate
    the history of one free-running stress run (`stress_ops` random requests on
    `stress_instances` instances, random seed `seed`; none with `stress_ops` 0) and of
    `free_runs` free runs driven by the suite's traces (conformance/trace_free_run.py); with
    `teeth`, replay it once per implementation defect."""
    cfg = Config(revision=revision)
    if stored is not None:
        suite, traces = stored
    else:
        suite = generate_suite(cfg, seed=seed, walks=walks, last_mile=last_mile)
        paths = write_suite(suite, out / revision, seed)
        traces = [(str(p), load_itf(p)) for p in paths]
    rep = RevisionReport(revision, len(traces), actions=suite.action_coverage(model_for(cfg)),
                         pairs=suite.pairs())

    def replay(p: str, tr: LoadedTrace, mutants: tuple[str, ...] | None) -> ReplayResult:
        return replay_trace(tr, p, db_url, schema(), mutants)

    t0 = time.perf_counter()
    for p, tr in traces:
        res = replay(p, tr, None)
        rep.steps += res.steps
        if res.mismatch is not None:
            rep.mismatches[p] = res.mismatch
    rep.seconds = time.perf_counter() - t0
    for name, (labels, fault) in OPT_IN.items():  # opt-in fault classes: replay only
        ocfg = Config(revision=revision, stuck_undos=fault == "stuck_undos",
                      ambiguous_failures=fault == "ambiguous_failures")
        op = write_walk(out / revision / f"opt-in-{name}.itf.json", ocfg,
                        walk_from_labels(ocfg, labels), name)
        res = replay(str(op), load_itf(op), None)
        rep.opt_in[str(op)] = res.steps
        if res.mismatch is not None:
            rep.mismatches[str(op)] = res.mismatch
    if histories:
        rep.histories = True
        for p, tr in traces:
            chk = replay_with_history(tr, p, db_url, schema())
            rep.history_events += chk.events
            mm = chk.mismatch()
            if mm is not None and chk.replay.ok:  # a replay mismatch is already reported
                rep.history_failures[p] = mm
        if stress_ops > 0:
            rep.stress = stress_history(revision, db_url, schema, seed, stress_instances,
                                        stress_ops)
        if free_runs > 0:
            from .impl_fixtures import Backend

            rep.free_runs = free_run_traces(traces, free_runs,
                                            lambda: Backend(db_url, schema()), seed)
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
        for name, mm in r.history_failures.items():
            cases.append((f"history of the replay of {name}", mm.render()))
        if r.histories:
            cases.append((f"histories of {r.traces} replays", None))
        for fr in r.free_runs:
            cases.append((f"trace-driven free run of {fr.trace}",
                          fr.failure + (f" (kept in {fr.kept})" if fr.kept else "") or None))
        if r.stress is not None:
            cases.append((f"stress history (seed {r.stress.seed})",
                          r.stress.failure + (f" (kept in {r.stress.kept})"
                                              if r.stress.kept else "") or None))
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
