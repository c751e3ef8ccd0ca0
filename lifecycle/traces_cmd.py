"""`lifecycle traces generate|replay`: the conformance suite's trace commands (issue 4)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from model.vocab import UsageError, check_mutants, check_revision

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
) -> None:
    """Write a suite of model traces covering every action it can reach, plus goals.json."""
    from conformance.coverage import all_action_goals
    from conformance.generate import generate_suite, write_suite
    from model.actions import model_for
    from model.state import Config

    try:
        cfg = Config(revision=check_revision(revision))
    except UsageError as e:
        raise _usage(str(e)) from None
    if walks < 1:
        raise _usage(f"--walks must be positive, got {walks}")
    suite = generate_suite(cfg, seed=seed, walks=walks, last_mile=last_mile)
    paths = write_suite(suite, out, seed)
    model = model_for(cfg)
    covered, total = suite.action_coverage(model)
    console.print(f"{len(paths)} traces ({sum(len(w.labels) for w in suite.walks)} steps) "
                  f"written to {out}")
    console.print(f"goals covered: actions {covered}/{total}, "
                  f"(external state, active VMM state) pairs {len(suite.pairs())}")
    for p in suite.pairs():
        console.print(f"  {p.removeprefix('pair:')}")
    missing = [g.removeprefix("action:") for g in all_action_goals(model)
               if g not in suite.covered]
    console.print(f"goals proven unreachable: 0 (no proof search yet); "
                  f"not covered: {len(missing)} actions (listed in {out / 'goals.json'})")


@traces_app.command("replay")
def replay(
    files: list[Path] = typer.Argument(..., help="ITF trace files (from `traces generate`)."),
    db: str = typer.Option("sqlite://", "--db", help="Database URL (SQLite or PostgreSQL)."),
    impl_mutant: list[str] = typer.Option(
        None, "--impl-mutant", help="Switch on a defect in the implementation only "
                                    "(repeatable); default: the trace's own defects."),
) -> None:
    """Replay traces against the implementation, comparing states after every step.

    Exit status: 0 when every trace replays without a mismatch, 1 at a mismatch (the first
    one per trace is printed with a field diff and the command to rerun it), 2 on bad input.
    """
    from conformance.replay import replay_trace
    from impl.testing import unique_schema
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
    steps = 0
    for f, tr in loaded:
        schema = unique_schema("lc_replay") if db.startswith("postgresql") else None
        res = replay_trace(tr, str(f), db, schema, muts)
        steps += res.steps
        if res.mismatch is None:
            console.print(f"[green]ok[/] {f}: {res.steps} steps")
        else:
            failed += 1
            console.print(f"[bold red]MISMATCH[/] {f}")
            console.print(res.mismatch.render(), markup=False, highlight=False)
    console.print(f"{len(loaded) - failed}/{len(loaded)} traces replayed without mismatch, "
                  f"{steps} steps compared")
    raise typer.Exit(1 if failed else 0)
