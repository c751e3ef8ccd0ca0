"""`lifecycle conformance`: generate, replay and teeth-check the conformance suite."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from model.vocab import REVISIONS, UsageError, check_revision

console = Console(width=None if Console().is_terminal else 200)
err = Console(stderr=True)


def conformance(
    revision: list[str] = typer.Option(
        None, "--revision", "-r", help="Protocol revision (repeatable); default: all."),
    db: str = typer.Option("sqlite://", "--db", help="Database URL (SQLite or PostgreSQL)."),
    junit: Path = typer.Option(None, "--junit", help="Write a JUnit XML report here."),
    json_path: Path = typer.Option(None, "--json", help="Write a JSON report here."),
    out: Path = typer.Option(Path("out/conformance"), "--out", help="Where the traces go."),
    walks: int = typer.Option(600, "--walks", help="Random walks per revision."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the generated suites."),
    teeth: bool = typer.Option(True, "--teeth/--no-teeth",
                               help="Replay once per implementation defect."),
    last_mile: bool = typer.Option(True, "--last-mile/--no-last-mile",
                                   help="Finally try every uncovered action after every "
                                        "stored prefix."),
    histories: bool = typer.Option(
        True, "--histories/--no-histories",
        help="Validate the implementation's own recorded histories: of every replay, and of "
             "one free-running stress run."),
    stress_instances: int = typer.Option(6, "--stress-instances", min=1,
                                         help="Instances of the stress run."),
    stress_ops: int = typer.Option(400, "--stress-ops", min=0,
                                   help="Random requests of the stress run (0: no stress "
                                        "run)."),
    free_runs: int = typer.Option(
        6, "--free-runs", min=0,
        help="Free runs driven by the suite's traces, per revision: each trace's requests "
             "and saga faults on replicas with their own threads, the recorded history "
             "validated (0: none; needs --histories)."),
    impl_coverage: Path = typer.Option(
        None, "--impl-coverage",
        help="Measure the branch coverage of impl/ reached by the whole run (coverage.py); "
             "print it and write a JSON report here."),
    suite: Path = typer.Option(
        None, "--suite",
        help="Replay the suites that `lifecycle traces generate -r R --out DIR/R` wrote "
             "(with Z3's coverage goals) instead of generating walk-only ones; --walks and "
             "--last-mile then do not apply."),
) -> None:
    """Generate each revision's suite, replay it against the implementation and check that
    every implementation defect makes some trace fail.

    Exit status: 0 when every trace conforms and every defect is detected, 1 otherwise, 2 on
    bad usage.
    """
    from conformance.impl_coverage import CoverageUnavailable, measuring

    # coverage starts before impl/ is first imported, so its module-level lines count
    try:
        cov_ctx = measuring(impl_coverage is not None)
    except CoverageUnavailable as e:
        err.print(f"[bold red]error:[/] --impl-coverage: {e}")
        raise typer.Exit(2) from None
    with cov_ctx as cov:
        ok = _run(revision, db, junit, json_path, out, walks, seed, teeth, last_mile,
                  histories, stress_instances, stress_ops, suite, free_runs)
    if impl_coverage is not None:
        from .traces_cmd import print_impl_coverage

        print_impl_coverage(cov, impl_coverage, "this conformance run")
    raise typer.Exit(0 if ok else 1)


def _run(revision: list[str] | None, db: str, junit: Path | None, json_path: Path | None,
         out: Path, walks: int, seed: int, teeth: bool, last_mile: bool, histories: bool,
         stress_instances: int, stress_ops: int, suite: Path | None = None,
         free_runs: int = 0) -> bool:
    from conformance.impl_fixtures import unique_schema
    from conformance.run import (
        Stored,
        SuiteError,
        load_suite,
        run_revision,
        write_json,
        write_junit,
    )
    from model.state import Config

    try:
        revs = [check_revision(r) for r in (revision or list(REVISIONS))]
    except UsageError as e:
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None
    if not db.startswith(("sqlite", "postgresql")):
        err.print(f"[bold red]error:[/] --db must be a sqlite:// or postgresql:// URL, got {db!r}")
        raise typer.Exit(2)
    pg = db.startswith("postgresql")

    def schema() -> str | None:
        return unique_schema("lc_conf") if pg else None

    stored: dict[str, Stored] = {}
    if suite is not None:
        try:  # every stored suite is loaded and checked before anything runs
            stored = {rev: load_suite(Config(revision=rev), suite / rev) for rev in revs}
        except SuiteError as e:
            err.print(f"[bold red]error:[/] --suite: {e}", soft_wrap=True)
            raise typer.Exit(2) from None
    reports = [run_revision(r, out, db, schema, walks, seed, teeth, last_mile, histories,
                            stress_instances, stress_ops, stored.get(r), free_runs)
               for r in revs]
    t = Table(title="conformance")
    for col in ("revision", "traces", "steps", "steps/s", "actions", "pairs", "mismatches",
                "replay histories", "stress history", "trace free runs", "defects detected"):
        t.add_column(col)
    for r in reports:
        rate = f"{r.steps / r.seconds:.0f}" if r.seconds else "-"
        found = f"{len(r.detected)}/{len(r.detected) + len(r.missed)}" if teeth else "-"
        hist = (f"{r.traces - len(r.history_failures)}/{r.traces} valid, "
                f"{r.history_events} events") if r.histories else "-"
        stress = "-" if r.stress is None else (
            f"{'valid' if r.stress.ok else 'INVALID'}, {r.stress.events} events, "
            f"{r.stress.seconds:.1f} s")
        runs = "-" if not r.free_runs else (
            f"{sum(fr.ok for fr in r.free_runs)}/{len(r.free_runs)} valid, "
            f"{sum(fr.fired for fr in r.free_runs)}/{sum(fr.faults for fr in r.free_runs)} "
            "faults fired")
        t.add_row(r.revision, str(r.traces), str(r.steps), rate,
                  f"{r.actions[0]}/{r.actions[1]}", str(len(r.pairs)), str(len(r.mismatches)),
                  hist, stress, runs, found)
    console.print(t)
    for r in reports:
        if r.opt_in:
            bad = sum(1 for p in r.opt_in if p in r.mismatches)
            console.print(f"{r.revision}: opt-in fault-class paths replayed: {len(r.opt_in)} "
                          f"traces, {sum(r.opt_in.values())} steps, {bad} mismatches "
                          "(counted in the mismatches column)")
    for r in reports:
        for mm in r.mismatches.values():
            console.print(mm.render(), markup=False, highlight=False)
        for p, mm in r.history_failures.items():
            console.print(f"[bold red]{r.revision}: the history of the replay of {p} "
                          "is not explained by the model[/]")
            console.print(mm.render(), markup=False, highlight=False)
        if r.stress is not None and not r.stress.ok:
            console.print(f"[bold red]{r.revision}: stress history (seed {r.stress.seed}): "
                          f"{r.stress.failure}[/]")
            if r.stress.kept:
                console.print(f"  rerun: lifecycle validate {r.stress.kept}")
        for fr in r.free_runs:
            if not fr.ok:
                console.print(f"[bold red]{r.revision}: trace-driven free run of {fr.trace}: "
                              f"{fr.failure}[/]")
                if fr.kept:
                    console.print(f"  rerun the check: lifecycle validate {fr.kept}")
        for m in r.missed:
            console.print(f"[bold red]{r.revision}: defect {m} is not detected[/]")
    if json_path:
        write_json(json_path, reports)
    if junit:
        write_junit(junit, reports)
    return all(r.ok for r in reports)
