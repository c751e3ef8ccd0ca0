"""`lifecycle traces generate|lemmas|replay|coverage`: the conformance suite's trace commands
(issue 4)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from model.vocab import UsageError, check_mutants, check_revision

if TYPE_CHECKING:
    from conformance.impl_coverage import ImplCoverage
    from model.state import Config

traces_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Generate model traces and replay them against the implementation.",
)
console = Console(width=None if Console().is_terminal else 200)
err = Console(stderr=True)


def _usage(msg: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {msg}", soft_wrap=True)
    return typer.Exit(2)


@traces_app.command("generate")
def generate(
    revision: str = typer.Option(..., "--revision", "-r", help="Protocol revision."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the ITF files."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same suite)."),
    walks: int = typer.Option(600, "--walks", help="Random walks to try at most."),
    last_mile: bool = typer.Option(True, "--last-mile/--no-last-mile",
                                   help="Finally try every uncovered action after every "
                                        "stored prefix."),
    z3: bool = typer.Option(True, "--z3/--no-z3",
                            help="Prove open goals unreachable, or search them with Z3."),
    z3_depth: int = typer.Option(10, "--z3-depth", help="Longest Z3 path from a seed."),
    z3_goal_seconds: float = typer.Option(20.0, "--z3-goal-seconds",
                                          help="Z3 time budget per open goal."),
    z3_goal_rlimit: int = typer.Option(0, "--z3-goal-rlimit",
                                       help="Z3 budget per open goal in Z3 resource units "
                                            "instead of seconds (0: use seconds): the same "
                                            "suite on every machine, however loaded."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="List the goals proven unreachable and undecided."),
) -> None:
    """Write a suite of model traces covering every goal it can reach, plus goals.json."""
    from conformance.generate import Z3Options, generate_suite, write_suite
    from conformance.goals import nodes_lacking
    from model.actions import model_for
    from model.state import Config

    try:
        cfg = Config(revision=check_revision(revision))
    except UsageError as e:
        raise _usage(str(e)) from None
    if walks < 1:
        raise _usage(f"--walks must be positive, got {walks}")
    if z3_goal_rlimit < 0:
        raise _usage(f"--z3-goal-rlimit must not be negative, got {z3_goal_rlimit}")
    opt = Z3Options(depth=z3_depth, goal_seconds=z3_goal_seconds,
                    goal_rlimit=z3_goal_rlimit or None,
                    log=(lambda m: err.print(m, markup=False, highlight=False))
                    if verbose else None) if z3 else None
    suite = generate_suite(cfg, seed=seed, walks=walks, last_mile=last_mile, z3=opt)
    paths = write_suite(suite, out, seed)
    model = model_for(cfg)
    console.print(f"{len(paths)} traces ({sum(len(w.labels) for w in suite.walks)} steps) "
                  f"written to {out}")
    cats = suite.categories(model)
    for cat, what in (("action", "model actions"),
                      ("pair", "(external state, active VMM state) pairs"),
                      ("node", "saga nodes as failure / crash points")):
        d = cats[cat]
        console.print(f"{what}: covered {len(d['covered'])}/{len(d['total'])} "
                      f"(by Z3-directed search {len(d['z3_found'])}), "
                      f"proven unreachable {len(d['unreachable'])}, "
                      f"undecided {len(d['undecided'])}, "
                      f"not covered {len(d['not_covered'])}")
    console.print("pairs covered: " + ", ".join(p.removeprefix("pair:") for p in suite.pairs()))
    if not z3:
        console.print("goals proven unreachable: 0 (--no-z3)")
    else:
        console.print(f"goals proven unreachable: {len(suite.unreachable)} "
                      f"(with {suite.lemmas} inductive lemmas); "
                      f"undecided: {len(suite.undecided)}; listed in {out / 'goals.json'}")
    for node, (missing, why) in nodes_lacking(model).items():
        console.print(f"node {node} has no {missing} outcome: {why}", highlight=False)
    if verbose:
        for g in suite.unreachable:
            console.print(f"  unreachable {g}", markup=False, highlight=False)
        for g, why in suite.undecided.items():
            console.print(f"  undecided {g}: {why}", markup=False, highlight=False)
        for per_cat in cats.values():
            for g in per_cat["not_covered"]:
                if g not in suite.undecided:
                    console.print(f"  not covered {g}", markup=False, highlight=False)


@traces_app.command("lemmas")
def lemmas(
    revision: str = typer.Option(..., "--revision", "-r", help="Protocol revision."),
    walks: int = typer.Option(60, "--walks", help="Random walks whose states propose lemmas."),
    relational: bool = typer.Option(
        False, "--relational", help="Propose relational candidates (conformance/relational.py) "
        "aimed at the --goal goals, and add what is proven to the stored set."),
    goal: list[str] = typer.Option(
        None, "--goal", help="With --relational: a goal to refute, e.g. pair:RUNNING/none."),
    samples: int = typer.Option(
        40_000, "--samples", help="With --relational: sampled states proposing candidates."),
    seed: int = typer.Option(1, "--seed", help="With --relational: the walks' random seed."),
    two_conditions: bool = typer.Option(
        True, "--two-conditions/--one-condition",
        help="With --relational: also propose candidates with two conditions (a saga's "
             "control state and a fact about the rows it names)."),
    fallbacks: bool = typer.Option(
        True, "--fallbacks/--no-fallbacks",
        help="With --relational: also propose every unconditional fact about a saga's "
             "rows under each of that saga's control states, in case the fact itself fails."),
    drop_log: Path = typer.Option(
        None, "--drop-log", help="With --relational: write every candidate Houdini drops, "
                                 "one line each (round, tab, candidate), after a line "
                                 "`# round R: ACTION` naming the step of the counterexample "
                                 "to induction, to this file."),
) -> None:
    """Mine candidate lemmas from walked states, keep the inductive subset (Houdini) and
    store it in conformance/lemmas/ for `traces generate` (which re-proves it every run)."""
    from conformance.coverage import all_action_goals, all_pair_goals
    from conformance.generate import generate_suite
    from conformance.goals import enrich, mine_and_prove, save_lemmas
    from model.actions import model_for
    from model.bmc import encoding_for
    from model.state import Config

    try:
        cfg = Config(revision=check_revision(revision))
    except UsageError as e:
        raise _usage(str(e)) from None
    model = model_for(cfg)
    if relational:
        _relational_lemmas(cfg, goal or [], samples, seed, two_conditions, fallbacks,
                           drop_log)
        return
    if goal or drop_log is not None:
        raise _usage("--goal and --drop-log go with --relational")
    suite = generate_suite(cfg, walks=walks, last_mile=False)
    sample = enrich(model, [*suite.sample.values(),
                            *(s for w in suite.walks for s in w.states)], 2)
    goals = [g for g in all_action_goals(model) + all_pair_goals() if g not in suite.covered]
    proof = mine_and_prove(model, encoding_for(cfg), sample, goals,
                           log=lambda m: err.print(m, markup=False, highlight=False))
    p = save_lemmas(cfg, proof)
    console.print(f"{len(proof.lemmas)} inductive lemmas ({proof.rounds} Houdini rounds, "
                  f"{proof.seconds:.0f}s) written to {p}")


def _relational_lemmas(cfg: Config, goals: list[str], samples: int, seed: int,
                       two_conditions: bool, fallbacks: bool,
                       drop_log: Path | None) -> None:
    """`traces lemmas --relational`: targeted Houdini over the stored lemmas, the invariants,
    the structural candidates and relational candidates mined from `samples` walked states,
    aimed at `goals`; what it proves is added to the stored set, which is re-proven whole."""
    from conformance import relational as rel
    from conformance.coverage import all_action_goals, all_pair_goals
    from conformance.goals import (
        Lemma,
        Proof,
        check_inductive,
        invariant_lemmas,
        prove_unreachable,
        save_lemmas,
        stored_proof,
        structural_lemmas,
        targeted_houdini,
    )
    from model.actions import model_for
    from model.bmc import encoding_for

    model = model_for(cfg)
    known = set(all_action_goals(model) + all_pair_goals())
    bad = [g for g in goals if g not in known]
    if not goals or bad:
        raise _usage(f"--relational needs goals (--goal) of this model; unknown: "
                     f"{', '.join(bad) or 'none given'} (pair goals look like "
                     "pair:RUNNING/none; `lifecycle traces generate` lists the undecided ones)")

    def log(m: str) -> None:
        err.print(m, markup=False, highlight=False)

    enc = encoding_for(cfg)
    stored = stored_proof(model, enc).lemmas
    log(f"{len(stored)} stored lemmas re-proven")
    sample = rel.walk_sample(model, samples, seed, log=log)
    t0 = time.perf_counter()
    tab = rel.table(model, sample)
    mined = [Lemma(spec) for spec in rel.mine(model, tab) + rel.sled_ranges(model, sample)]
    if two_conditions:
        mined += [Lemma(spec) for spec in rel.mine_pairs(model, tab, log=log)]
    if fallbacks:
        mined += [Lemma(spec) for spec in rel.mine_fallbacks(model, tab, log=log)]
    log(f"{len(mined)} candidates mined from {len(sample)} states "
        f"({time.perf_counter() - t0:.0f}s)")
    cands = stored + invariant_lemmas(model) + structural_lemmas(model) + mined
    drops = drop_log.open("w") if drop_log is not None else None

    def on_drop(rnd: int, names: list[str], action: str) -> None:
        if drops is not None:
            drops.write(f"# round {rnd}: {action}\n")
            drops.writelines(f"{rnd}\t{n}\n" for n in names)
            drops.flush()

    try:
        proof = targeted_houdini(model, enc, cands, goals, timeout_ms=600_000, log=log,
                                 minimize_cores=True, on_drop=on_drop)
    finally:
        if drops is not None:
            drops.close()
    if not proof.lemmas:
        console.print("Houdini kept no lemma set: no inductive subset of the candidates "
                      "refutes the goals (or a query ran out of time); nothing stored")
        raise typer.Exit(1)
    lemmas = list(dict.fromkeys(stored + proof.lemmas))
    if not check_inductive(model, enc, lemmas):
        raise RuntimeError("the stored lemmas and the new ones are not inductive together")
    merged = Proof(lemmas, proof.rounds, proof.seconds, proof.dropped)
    refuted = prove_unreachable(model, enc, merged, goals)
    p = save_lemmas(cfg, merged)
    console.print(f"{len(lemmas)} inductive lemmas ({len(lemmas) - len(stored)} new; "
                  f"{proof.rounds} Houdini rounds, {proof.seconds:.0f}s) written to {p}; "
                  f"proven unreachable: {', '.join(refuted) or 'none of the goals'}")


@traces_app.command("replay")
def replay(
    files: list[Path] = typer.Argument(..., help="ITF trace files (from `traces generate`)."),
    db: str = typer.Option("sqlite://", "--db", help="Database URL (SQLite or PostgreSQL)."),
    impl_mutant: list[str] = typer.Option(
        None, "--impl-mutant", help="Switch on a defect in the implementation only "
                                    "(repeatable); default: the trace's own defects."),
    impl_coverage: Path = typer.Option(
        None, "--impl-coverage",
        help="Measure the branch coverage of impl/ reached by these traces (coverage.py); "
             "print it and write a JSON report here."),
    validate_history: bool = typer.Option(
        False, "--validate-history",
        help="Also record the implementation's own history of each replay (impl/history.py) "
             "and check that every recorded step is a transition of the model (about four "
             "times slower)."),
    keep_history: Path = typer.Option(
        None, "--keep-history",
        help="With --validate-history: keep every recorded history in this directory "
             "(failing ones are always kept)."),
) -> None:
    """Replay traces against the implementation, comparing states after every step.

    Exit status: 0 when every trace replays without a mismatch, 1 at a mismatch (the first
    one per trace is printed with a field diff and the command to rerun it), 2 on bad input.
    """
    from conformance.impl_coverage import CoverageUnavailable, measuring

    # coverage starts before impl/ is first imported, so its module-level lines count
    try:
        cov_ctx = measuring(impl_coverage is not None)
    except CoverageUnavailable as e:
        raise _usage(f"--impl-coverage: {e}") from None
    with cov_ctx as cov:
        failed = _replay_files(files, db, impl_mutant,
                               keep_history if validate_history or keep_history else None,
                               validate_history or keep_history is not None)
    if impl_coverage is not None:
        print_impl_coverage(cov, impl_coverage, "these traces")
    raise typer.Exit(failed)


@traces_app.command("coverage")
def coverage(
    reports: list[Path] = typer.Argument(..., help="--impl-coverage JSON reports."),
    json_out: Path = typer.Option(None, "--json", help="Write the combined report here."),
) -> None:
    """Combine --impl-coverage reports (say, one conformance run per engine): a statement or
    branch counts as reached if any run reached it. Reports of other code are refused."""
    from conformance.impl_coverage import CoverageReportError, load_report, union

    try:
        cov = union([load_report(p) for p in reports])
    except CoverageReportError as e:
        raise _usage(str(e)) from None
    print_impl_coverage(cov, json_out, f"{len(reports)} reports combined")


def print_impl_coverage(cov: ImplCoverage, path: Path | None, what: str) -> None:
    """Print the per-file table and the totals, and write the JSON report to `path`."""
    import json

    from rich.table import Table

    t = Table(title=f"branch coverage of impl/ by {what} (coverage.py, statements + "
                    "branches)")
    for col in ("file", "statements", "missed", "branches", "missed branches", "%"):
        t.add_column(col, justify="right" if col != "file" else "left")
    for f in cov.files:
        pct = 100.0 * f.covered / f.total if f.total else 100.0
        t.add_row(f.path, str(f.statements), str(f.missed_statements), str(f.branches),
                  str(f.missed_branches), f"{pct:.0f}")
    console.print(t)
    console.print(f"impl/ branch coverage: {cov.total_percent:.1f}% overall, "
                  f"{cov.protocol_percent:.1f}% of the protocol code (without "
                  f"{', '.join(f.path for f in cov.files if f not in cov.protocol_files)})")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cov.as_json(), indent=2) + "\n")
        console.print(f"wrote {path}")


def _replay_files(files: list[Path], db: str, impl_mutant: list[str] | None,
                  keep_history: Path | None = None, with_history: bool = False) -> int:
    """Replay each file; 0 when all conform, 1 at any mismatch. Bad input exits 2. With
    `with_history`, each replay's recorded history is validated too."""
    from conformance.impl_fixtures import unique_schema
    from conformance.replay import replay_trace
    from conformance.replay_history import replay_with_history
    from model.trace import TraceError, load_itf

    try:
        muts = check_mutants(impl_mutant) if impl_mutant else None
    except UsageError as e:
        raise _usage(str(e)) from None
    if not db.startswith(("sqlite", "postgresql")):
        raise _usage(f"--db must be a sqlite:// or postgresql:// URL, got {db!r}")
    loaded = []
    for f in files:
        try:
            loaded.append((f, load_itf(f)))
        except TraceError as e:
            raise _usage(str(e)) from None
    failed = 0
    steps = events = 0
    for f, tr in loaded:
        schema = unique_schema("lc_replay") if db.startswith("postgresql") else None
        if with_history:
            chk = replay_with_history(tr, str(f), db, schema, muts, keep_history)
            res, mm = chk.replay, chk.mismatch()
            events += chk.events
            extra = f", history of {chk.events} events validated"
        else:
            res = replay_trace(tr, str(f), db, schema, muts)
            mm, extra = res.mismatch, ""
        steps += res.steps
        if mm is None:
            console.print(f"[green]ok[/] {f}: {res.steps} steps{extra}")
        else:
            failed += 1
            console.print(f"[bold red]MISMATCH[/] {f}")
            console.print(mm.render(), markup=False, highlight=False)
    console.print(f"{len(loaded) - failed}/{len(loaded)} traces replayed without mismatch, "
                  f"{steps} steps compared"
                  + (f", {events} recorded events validated" if with_history else ""))
    return 1 if failed else 0
