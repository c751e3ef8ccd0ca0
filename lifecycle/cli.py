"""The `lifecycle` console command."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from model.vocab import MUTANTS, REVISIONS, UsageError, check_mutants, check_revision

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Verify, implement and test the instance / VMM / migration / updater-lock lifecycle.",
)
# wide enough for counterexample tables when the output is a file or a pipe
console = Console(width=None if Console().is_terminal else 200)
err = Console(stderr=True)

from lifecycle.conformance_cmd import conformance  # noqa: E402
from lifecycle.traces_cmd import traces_app  # noqa: E402
from lifecycle.validate_cmd import validate  # noqa: E402

app.add_typer(traces_app, name="traces")
app.command("conformance")(conformance)
app.command("validate")(validate)


def _usage(e: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {e}", soft_wrap=True)
    return typer.Exit(2)


@app.command()
def verify(
    revision: list[str] = typer.Option(
        None, "--revision", "-r", help="Protocol revision (repeatable); default: all."),
    mutant: list[str] = typer.Option(
        None, "--mutant", "-m", help="Switch on a named defect (repeatable)."),
    depth: int = typer.Option(None, "--depth", "-d", help="Steps explored from each seed."),
    invariant: list[str] = typer.Option(
        None, "--invariant", "-i", help="Check only this invariant (repeatable)."),
    json_path: Path = typer.Option(None, "--json", help="Write a JSON report here."),
    junit_path: Path = typer.Option(None, "--junit", help="Write a JUnit XML report here."),
    trace_dir: Path = typer.Option(Path("out/traces"), "--trace-dir",
                                   help="Where counterexample traces (ITF) are written."),
    first: bool = typer.Option(False, "--first",
                               help="Stop at a shortest counterexample: all seeds are searched depth by depth together (docs/decisions.md)."),
    unbounded: bool = typer.Option(False, "--unbounded",
                                   help="Also try to prove invariants for every depth by "
                                        "induction (Houdini)."),
    seed: list[str] = typer.Option(
        None, "--seed", "-s",
        help="Start only from this seed state (repeatable); default: all. "
             "Fewer seeds let a deeper search finish sooner."),
    no_lemmas: bool = typer.Option(
        False, "--no-lemmas",
        help="Do not assert the conformance suite's stored lemmas (re-proven every run) on "
             "the path states; same verdicts, slower (docs/decisions.md)."),
    stuck_undos: bool = typer.Option(
        False, "--stuck-undos",
        help="Opt-in fault class: the start saga's ENSURE_REGISTERED undo may meet an "
             "unhealthy sled, fail, and leave the saga stuck (docs/findings.md)."),
) -> None:
    """Check every invariant by bounded model checking and print the verdicts.

    Exit status: 0 when every invariant holds (known findings of the protocol itself are
    reported but do not fail), 1 when any is violated, 2 on bad usage.
    """
    from lifecycle.verify_cmd import DEFAULT_DEPTH, verify_main
    from model.invariants import check_invariant_ids
    from model.seeds import check_seed_names

    try:
        revs = [check_revision(r) for r in (revision or list(REVISIONS))]
        muts = check_mutants(mutant or [])
        invs = list(check_invariant_ids(invariant)) if invariant else None
        seeds = check_seed_names(seed) if seed else None
        d = DEFAULT_DEPTH if depth is None else depth
        if not 1 <= d <= 40:
            raise UsageError(f"--depth must be between 1 and 40, got {d}")
    except UsageError as e:
        raise _usage(e) from None
    raise typer.Exit(verify_main(revs, muts, d, invs, json_path, junit_path, trace_dir, console,
                                 first, unbounded, seeds, lemmas=not no_lemmas,
                                 stuck_undos=stuck_undos))


@app.command()
def mutants() -> None:
    """List the named defects that `verify --mutant` can switch on, one line each."""
    for m in MUTANTS.values():
        where = "" if m.in_impl else "  (model only)"
        typer.echo(f"{m.name:37s} {m.summary}; opens {m.race}{where}")


@app.command()
def invariants() -> None:
    """List the invariants with their ids, sentences and SPEC sections."""
    from model.invariants import INVARIANTS

    t = Table(title=f"{len(INVARIANTS)} invariants")
    t.add_column("id")
    t.add_column("kind")
    t.add_column("statement")
    t.add_column("source")
    for inv in INVARIANTS.values():
        t.add_row(inv.id, inv.kind, inv.sentence, f"{inv.source}: {inv.spec}")
    console.print(t)


@app.command()
def replay(trace: Path = typer.Argument(..., help="An ITF trace file written by verify.")) -> None:
    """Re-run a trace file on the model and re-check its invariant at every step."""
    from lifecycle.verify_cmd import print_counterexample
    from model.bmc import Step, Trace, Verdict, first_violation
    from model.invariants import INVARIANTS
    from model.seeds import Seed
    from model.trace import TraceError, load_itf

    try:
        lt = load_itf(trace)
    except TraceError as e:
        raise _usage(e) from None
    from model.actions import model_for

    model = model_for(lt.cfg)
    k = lt.seed_len
    seed = Seed(str(lt.meta.get("seed")), "seed prefix replayed", lt.labels[:k], lt.states[k])
    steps = [Step(model.action_index(lab), st)
             for lab, st in zip(lt.labels[k:], lt.states[k + 1:], strict=True)]
    tr = Trace(lt.cfg, seed, steps)
    inv_id = lt.meta.get("invariant")
    console.print(f"{trace}: {len(lt.labels)} steps replayed on the model "
                  f"({lt.cfg.describe()}), seed prefix {k} steps")
    if inv_id not in INVARIANTS:
        console.print("no invariant named in the trace; replay only")
        raise typer.Exit(0)
    at = first_violation(INVARIANTS[inv_id], model, tr)
    if at is None:
        console.print(f"[green]{inv_id} holds along this trace[/] (the trace is stale)")
        raise typer.Exit(0)
    print_counterexample(Verdict(inv_id, "violated", at, 0.0,
                                 Trace(lt.cfg, seed, steps[:at])), None, console)
    console.print(f"[bold red]{inv_id} is violated at step {at}[/]")
    raise typer.Exit(1)


@app.command()
def demo(
    db: str = typer.Option("sqlite://", help="Database URL (default: embedded in-memory SQLite)."),
) -> None:
    """Run a short scripted lifecycle (create, start, migrate, stop, delete) and print each state."""
    from .demo_cmd import run_demo

    raise typer.Exit(run_demo(db))


@app.command()
def diagrams(
    revision: list[str] = typer.Option(
        None, "--revision", "-r", help="Protocol revision (repeatable); default: all."),
    out: Path = typer.Option(Path("diagrams"), "--out", help="Output folder."),
    fmt: list[str] = typer.Option(
        None, "--format", "-f", help="svg, png or dot (repeatable); default: all. "
                                     "The DOT file is always written."),
    coverage: Path = typer.Option(None, "--coverage",
                                  help="Coverage file from the conformance suite: covered "
                                       "edges solid, others dashed (docs/diagrams.md)."),
    depth: int = typer.Option(None, "--depth", help="Exploration depth from the seeds."),
    max_states: int = typer.Option(None, "--max-states", help="Stop exploring beyond this."),
) -> None:
    """Explore the model and write its state diagrams (DOT, SVG, PNG) per revision."""
    from lifecycle.diagrams_cmd import diagrams_main
    from model.explore import DEFAULT_DEPTH, DEFAULT_MAX_STATES

    try:
        revs = [check_revision(r) for r in (revision or list(REVISIONS))]
    except UsageError as e:
        raise _usage(e) from None
    raise typer.Exit(diagrams_main(revs, out, fmt, coverage,
                                   DEFAULT_DEPTH if depth is None else depth,
                                   DEFAULT_MAX_STATES if max_states is None else max_states,
                                   console, err))


@app.command()
def explain(
    trace: Path = typer.Argument(..., help="An ITF trace file (e.g. written by verify)."),
    out: Path = typer.Option(Path("out/explain"), "--out", help="Output folder."),
    fmt: list[str] = typer.Option(None, "--format", "-f",
                                  help="svg, png or dot (repeatable); default: all."),
    seed: bool = typer.Option(True, "--seed/--no-seed",
                              help="Show the seed prefix of the trace (greyed)."),
) -> None:
    """Draw a trace as a sequence diagram (one lane per actor) and tabulate what changed."""
    from lifecycle.explain_cmd import explain_main

    raise typer.Exit(explain_main(trace, out, fmt, seed, console, err))


if __name__ == "__main__":
    app()
