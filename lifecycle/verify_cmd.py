"""`lifecycle verify`: bounded checking of every invariant, with tables, trace files and
machine-readable reports."""

from __future__ import annotations

import json
import shlex
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import z3
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from model.actions import model_for
from model.bmc import Report, Trace, Verdict
from model.display import decode
from model.findings import Finding, findings_for
from model.invariants import INVARIANTS
from model.state import Config
from model.trace import MODEL_REVISION, changed_fields, write_itf

DEFAULT_DEPTH = 8


@dataclass
class RevisionResult:
    report: Report
    findings: dict[str, Finding]
    trace_files: dict[str, Path]
    proved: list[str] | None = None  # proven for every depth by induction (--unbounded)

    def status(self, inv: str) -> str:
        v = self.report.verdicts[inv]
        if v.status == "violated" and inv in self.findings:
            return "finding"
        return v.status

    @property
    def unexpected(self) -> list[str]:
        return [i for i in self.report.verdicts if self.status(i) == "violated"]


def expanded_prefix(trace: Trace) -> list[str]:
    """The seed prefix with `unwind:` entries expanded to the undo actions they stand for."""
    from model.seeds import expand_step
    from model.step import apply

    model = model_for(trace.cfg)
    s = model.layout.fresh_state()
    labels: list[str] = []
    for lab in trace.seed.prefix:
        for step in expand_step(model, s, lab):
            t = apply(model, model.action_index(step), s)
            assert t is not None
            labels.append(step)
            s = t
    return labels


def write_trace(trace: Trace, inv: str, depth: int, out_dir: Path) -> Path:
    cfg = trace.cfg
    model = model_for(cfg)
    prefix = expanded_prefix(trace)
    labels = prefix + [model.actions[s.action].label for s in trace.steps]
    from model.step import apply

    states = [model.layout.fresh_state()]
    for lab in labels:
        t = apply(model, model.action_index(lab), states[-1])
        assert t is not None, lab
        states.append(t)
    tag = cfg.revision + ("-" + "+".join(cfg.mutants) if cfg.mutants else "") + (
        "-stuck-undos" if cfg.stuck_undos else "")
    path = out_dir / f"{tag}--{inv}.itf.json"
    write_itf(path, cfg, model, labels, states, seed=trace.seed.name, seed_len=len(prefix),
              invariant=inv, depth=depth, command=f"lifecycle replay {shlex.quote(str(path))}")
    return path


def run_verify(revisions: list[str], mutants: tuple[str, ...], depth: int,
               invariants: list[str] | None, trace_dir: Path, console: Console,
               stop_on_violation: bool = False,
               unbounded: bool = False,
               seeds: list[str] | None = None,
               lemmas: bool = True, stuck_undos: bool = False) -> dict[str, RevisionResult]:
    from model.bmc import verify_many
    from model.seeds import SEEDS

    results: dict[str, RevisionResult] = {}
    jobs: list[tuple[Config, list[str] | None]] = []
    for rev in revisions:
        ids = invariants or list(INVARIANTS)
        if mutants:  # a finding's invariant cannot tell whether a mutant is caught
            ids = [i for i in ids
                   if i not in findings_for(rev, seeds, depth, DEFAULT_DEPTH)]
        jobs.append((Config(revision=rev, mutants=mutants, stuck_undos=stuck_undos), ids))
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} seeds"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        tasks = {cfg.revision: progress.add_task(f"{cfg.revision}: depth {depth}",
                                                 total=len(seeds or SEEDS))
                 for cfg, _ in jobs}

        def cb(cfg: Config, done: int) -> None:
            progress.update(tasks[cfg.revision], completed=done)

        reports = verify_many(jobs, depth, cb, seeds, stop_on_violation=stop_on_violation,
                              lemmas=lemmas)
        if mutants and stop_on_violation and seeds is None:
            reports = _opt_in_fallback(jobs, reports, depth, progress)
        for (cfg, job_ids), report in zip(jobs, reports, strict=True):
            files: dict[str, Path] = {}
            for inv, v in report.verdicts.items():
                if v.trace is not None:
                    files[inv] = write_trace(v.trace, inv, v.depth, trace_dir)
            proved = None
            if unbounded:
                from conformance.goals import support_for
                from model.induction import houdini

                progress.update(tasks[cfg.revision],
                                description=f"{cfg.revision}: induction (unbounded)")
                # the conformance suite's stored lemmas, re-proven, strengthen the induction
                ind = houdini(cfg, job_ids, support=support_for(cfg))
                proved = [i for i in ind.proved if report.verdicts[i].status == "holds"]
            # only findings this check can meet explain a violation (a violation of F2's
            # invariant from the default seeds within the default depth is not F2)
            scope = findings_for(cfg.revision, seeds, depth, DEFAULT_DEPTH)
            results[cfg.revision] = RevisionResult(report, scope, files, proved)
    return results


def _opt_in_fallback(jobs: list[tuple[Config, list[str] | None]], reports: list[Report],
                     depth: int, progress: Progress) -> list[Report]:
    """A defect hunt (`--mutant ... --first`, default seeds) that caught nothing within the
    depth goes on from the opt-in seeds (`model/seeds.py`), which the default run leaves out
    for their cost. The shortest counterexample from them is then the shortest from any
    seed within the depth, since the default seeds have none. Invariants of a finding that
    the opt-in seeds can meet are not judged there (a finding cannot tell whether the defect
    is caught); their verdict becomes `unknown`, as they were checked from the default seeds
    only. docs/decisions.md, "Defect hunts go on from the opt-in seeds"."""
    from model.bmc import verify_many
    from model.seeds import OPT_IN_SEEDS

    opt = list(OPT_IN_SEEDS)
    out = list(reports)
    for j, ((cfg, ids), rep) in enumerate(zip(jobs, reports, strict=True)):
        if any(v.status == "violated" for v in rep.verdicts.values()):
            continue
        scope = findings_for(cfg.revision, opt, depth, DEFAULT_DEPTH)
        judged = [i for i in (ids or list(rep.verdicts)) if i not in scope]
        task = progress.add_task(f"{cfg.revision}: nothing caught from the default seeds; "
                                 f"opt-in seeds, depth {depth}", total=len(opt))

        def cb(_cfg: Config, done: int, task: Any = task) -> None:
            progress.update(task, completed=done)

        (more,) = verify_many([(cfg, judged)], depth, cb, opt, stop_on_violation=True)
        merged = Report(cfg, depth, [*rep.seeds, *more.seeds], state_vars=rep.state_vars,
                        actions=rep.actions, seconds=rep.seconds + more.seconds)
        for inv, a in rep.verdicts.items():
            b = more.verdicts.get(inv)
            if b is not None and (b.status == "violated" or a.status == b.status == "holds"):
                merged.verdicts[inv] = b
            else:
                d = a.depth if b is None else min(a.depth, b.depth)
                merged.verdicts[inv] = Verdict(inv, "unknown", d,
                                               max(a.seconds, b.seconds if b else 0.0))
        out[j] = merged
    return out


STYLE = {"holds": "green", "violated": "bold red", "finding": "yellow", "unknown": "dim"}


def print_results(results: dict[str, RevisionResult], console: Console, total: float) -> None:
    for rev, rr in results.items():
        r = rr.report
        cfg = r.cfg
        title = (f"{rev}  mutants={','.join(cfg.mutants) or 'none'}  "
                 + ("faults=+stuck-undos  " if cfg.stuck_undos else "") + f"depth={r.depth}  "
                 f"seeds={','.join(r.seeds)}  {r.state_vars} state variables, "
                 f"{r.actions} actions  ({r.seconds:.1f} s)")
        t = Table(title=title, title_justify="left")
        t.add_column("invariant", no_wrap=True)
        t.add_column("verdict", no_wrap=True)
        t.add_column("depth", justify="right")
        t.add_column("time", justify="right")
        if rr.proved is not None:
            t.add_column("unbounded", no_wrap=True)
        t.add_column("note")
        for inv, v in r.verdicts.items():
            st = rr.status(inv)
            note = ""
            if st == "finding":
                f = rr.findings[inv]
                note = f"{f.id}: {f.title}" + (f" (fixed in {f.fixed_in})" if f.fixed_in else "")
            elif st == "violated":
                note = f"trace: {rr.trace_files.get(inv, '')}"
            elif st == "holds":
                note = INVARIANTS[inv].source
            cells = [inv, f"[{STYLE[st]}]{st}[/]", str(v.depth), f"{v.seconds:.1f}s"]
            if rr.proved is not None:
                cells.append("[green]proved[/]" if inv in rr.proved else "")
            t.add_row(*cells, note)
        console.print(t)
        # stale: every checked invariant of an in-scope finding held (a finding may break
        # some of its invariants only deeper, e.g. F1's third at depth 9)
        scope = findings_for(rev, r.seeds, r.depth, DEFAULT_DEPTH)
        stale = sorted({f.id for f in scope.values()
                        if any(i in r.verdicts for i in f.invariants)
                        and all(r.verdicts[i].status == "holds"
                                for i in f.invariants if i in r.verdicts)})
        if stale and not cfg.mutants:
            console.print(f"[yellow]note:[/] finding(s) {', '.join(stale)} did not reproduce "
                          f"within depth {r.depth}")
        for inv in rr.unexpected:
            print_counterexample(r.verdicts[inv], rr.trace_files.get(inv), console)
    console.print(f"total time {total:.1f} s  (z3 {z3.get_version_string()}, "
                  f"model {MODEL_REVISION})")


def print_counterexample(v: Verdict, path: Path | None, console: Console) -> None:
    assert v.trace is not None
    trace = v.trace
    model = model_for(trace.cfg)
    inv = INVARIANTS[v.invariant]
    t = Table(title=f"counterexample: {v.invariant} — {inv.sentence}", title_justify="left",
              show_lines=False)
    t.add_column("step", justify="right")
    t.add_column("actor", no_wrap=True)
    t.add_column("action", no_wrap=True)
    t.add_column("arguments")
    t.add_column("changed")
    before = trace.seed.state
    t.add_row("0", "", f"seed '{trace.seed.name}'", "", trace.seed.description)
    for i, st in enumerate(trace.steps, 1):
        a = model.actions[st.action]
        ch = changed_fields(before, st.state)
        txt = ", ".join(f"{k}: {decode(model, k, x)}→{decode(model, k, y)}"
                        for k, (x, y) in ch.items())
        args = ", ".join(f"{k}={val}" for k, val in a.args)
        t.add_row(str(i), a.actor, a.name, args, txt or "(no change)")
        before = st.state
    console.print(t)
    if path:
        console.print(f"replay: lifecycle replay {shlex.quote(str(path))}", soft_wrap=True)


def junit(results: dict[str, RevisionResult], path: Path) -> None:
    suites = ET.Element("testsuites", name="lifecycle verify")
    for rev, rr in results.items():
        r = rr.report
        s = ET.SubElement(suites, "testsuite", name=f"verify.{rev}",
                          tests=str(len(r.verdicts)),
                          failures=str(len(rr.unexpected)), time=f"{r.seconds:.3f}")
        for inv, v in r.verdicts.items():
            tc = ET.SubElement(s, "testcase", classname=f"verify.{rev}", name=inv,
                               time=f"{v.seconds:.3f}")
            st = rr.status(inv)
            if st == "violated":
                ET.SubElement(tc, "failure", message=f"violated at depth {v.depth}",
                              type="counterexample").text = str(rr.trace_files.get(inv, ""))
            elif st == "finding":
                ET.SubElement(tc, "skipped", message=f"known finding {rr.findings[inv].id}")
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="unicode", xml_declaration=True)


def json_report(results: dict[str, RevisionResult], path: Path, depth: int,
                total: float) -> None:
    doc: dict[str, Any] = {"tool": "lifecycle verify", "model-revision": MODEL_REVISION,
                           "z3": z3.get_version_string(), "depth": depth,
                           "seconds": round(total, 3), "revisions": {}}
    for rev, rr in results.items():
        r = rr.report
        doc["revisions"][rev] = {
            "mutants": list(r.cfg.mutants), "seeds": r.seeds, "state_vars": r.state_vars,
            "stuck_undos": r.cfg.stuck_undos,
            "actions": r.actions, "seconds": round(r.seconds, 3),
            "verdicts": {inv: {"status": rr.status(inv), "depth": v.depth,
                               "seconds": round(v.seconds, 3),
                               "finding": rr.findings[inv].id if inv in rr.findings
                               and v.status == "violated" else None,
                               "trace": str(rr.trace_files[inv]) if inv in rr.trace_files
                               else None,
                               "unbounded": None if rr.proved is None else inv in rr.proved}
                         for inv, v in r.verdicts.items()},
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def verify_main(revisions: list[str], mutants: tuple[str, ...], depth: int,
                invariants: list[str] | None, json_path: Path | None, junit_path: Path | None,
                trace_dir: Path, console: Console, first: bool = False,
                unbounded: bool = False, seeds: list[str] | None = None,
                lemmas: bool = True, stuck_undos: bool = False) -> int:
    t0 = time.perf_counter()
    results = run_verify(revisions, mutants, depth, invariants, trace_dir, console, first,
                         unbounded, seeds, lemmas, stuck_undos)
    total = time.perf_counter() - t0
    print_results(results, console, total)
    if json_path:
        json_report(results, json_path, depth, total)
    if junit_path:
        junit(results, junit_path)
    return 1 if any(rr.unexpected for rr in results.values()) else 0
