"""`lifecycle validate HISTORY`: check a recorded implementation history against the model."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from model.vocab import UsageError, check_revision

console = Console(width=None if Console().is_terminal else 200)
err = Console(stderr=True)


def print_failure(result: object, con: Console) -> None:
    """The first unexplained event: where, why, the cores and the nearest model step."""
    from conformance.validate import Result

    assert isinstance(result, Result) and result.failure is not None
    f = result.failure
    where = (f"event seq {f.event.seq} (line {f.event.line})" if f.first is f.event else
             f"events seq {f.first.seq}..{f.event.seq} (lines {f.first.line}..{f.event.line})")
    con.print(f"[bold red]unexplained:[/] {where}, instance {f.event.instance}, "
              f"action {f.label}")
    con.print(f"  {f.reason}")
    for name, ident in f.legend.items():
        con.print(f"  {name} = {ident}")
    shown = f.cores[:6]
    for lab, core in shown:
        con.print(f"  ruled out {lab}: " + ("; ".join(core) if core else "(no core)"))
    if len(f.cores) > len(shown):
        con.print(f"  ... and {len(f.cores) - len(shown)} more candidate actions")
    if f.diff:
        con.print(f"  nearest step of {f.nearest_action} (recorded vs model):"
                  if f.nearest_action else "  difference from the model:")
        t = Table()
        for col in ("variable", "when", "recorded", "model"):
            t.add_column(col)
        for row in f.diff:
            t.add_row(*row)
        con.print(t)


def validate(
    history: Path = typer.Argument(  # noqa: B008 - typer declares arguments as defaults
        ..., help="A history file written by impl/history.py."),
    revision: str = typer.Option(None, "--revision", "-r",  # noqa: B008
                                 help="Model revision to check against; default: the "
                                      "history's own."),
) -> None:
    """Check that every recorded step of an implementation history is a transition of the
    model (docs/history-validation.md).

    Exit status: 0 when every step is explained, 1 at the first unexplained one, 2 on bad
    input.
    """
    from conformance.history_file import HistoryError, load
    from conformance.validate import validate as run

    try:
        rev = check_revision(revision) if revision else None
        h = load(history)
        if rev is None:
            check_revision(h.revision)
    except (HistoryError, UsageError) as e:
        err.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        raise typer.Exit(2) from None
    t0 = time.perf_counter()
    try:
        res = run(h, rev)
    except (TypeError, ValueError, KeyError) as e:  # a record field of the wrong kind
        err.print(f"[bold red]error:[/] {history}: records with unexpected values "
                  f"({type(e).__name__}: {e})", soft_wrap=True)
        raise typer.Exit(2) from None
    dt = time.perf_counter() - t0
    console.print(f"{history}: {res.events} events, {res.steps} steps checked, "
                  f"{res.distinct} distinct abstract steps sent to Z3 "
                  f"({res.config.describe()}), {dt:.2f} s")
    for name, n in sorted(res.divergences.items()):
        console.print(f"  {n} step(s) explained only by the known divergence {name} "
                      "(conformance/history_divergences.py)")
    if res.failure is not None:
        print_failure(res, console)
        raise typer.Exit(1)
    console.print("[green]every step is a transition of the model[/]")
    raise typer.Exit(0)
