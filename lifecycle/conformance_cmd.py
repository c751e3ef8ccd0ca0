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
) -> None:
    """Generate each revision's suite, replay it against the implementation and check that
    every implementation defect makes some trace fail.

    Exit status: 0 when every trace conforms and every defect is detected, 1 otherwise, 2 on
    bad usage.
    """
    from conformance.run import run_revision, write_json, write_junit
    from impl.testing import unique_schema

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

    reports = [run_revision(r, out, db, schema, walks, seed, teeth, last_mile)
               for r in revs]
    t = Table(title="conformance")
    for col in ("revision", "traces", "steps", "steps/s", "actions", "pairs", "mismatches",
                "defects detected"):
        t.add_column(col)
    for r in reports:
        rate = f"{r.steps / r.seconds:.0f}" if r.seconds else "-"
        found = f"{len(r.detected)}/{len(r.detected) + len(r.missed)}" if teeth else "-"
        t.add_row(r.revision, str(r.traces), str(r.steps), rate,
                  f"{r.actions[0]}/{r.actions[1]}", str(len(r.pairs)), str(len(r.mismatches)),
                  found)
    console.print(t)
    for r in reports:
        for mm in r.mismatches.values():
            console.print(mm.render(), markup=False, highlight=False)
        for m in r.missed:
            console.print(f"[bold red]{r.revision}: defect {m} is not detected[/]")
    if json_path:
        write_json(json_path, reports)
    if junit:
        write_junit(junit, reports)
    raise typer.Exit(0 if all(r.ok for r in reports) else 1)
