"""`lifecycle diagrams`: explore the model per revision and write its state diagrams."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from model.explore import (
    DEFAULT_DEPTH,
    DEFAULT_MAX_STATES,
    StateCapReached,
    explore,
    explorer_config,
)

from .dot import DotMissing, chosen_formats, render
from .state_diagrams import Coverage, CoverageError, all_diagrams, load_coverage

DEFAULT_OUT = Path("diagrams")


def generate(revision: str, out: Path, formats: tuple[str, ...],
             coverage: Coverage | None = None, depth: int = DEFAULT_DEPTH,
             max_states: int = DEFAULT_MAX_STATES) -> tuple[list[Path], str]:
    """Write every diagram of one revision under out/<revision>/; returns the files written
    and a one-line summary of the exploration. The DOT file is always written."""
    ex = explore(explorer_config(revision), depth, max_states)
    folder = out / revision
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in all_diagrams(ex, coverage).items():
        path = folder / f"{name}.dot"
        path.write_text(text)
        written.append(path)
        for fmt in formats:
            if fmt != "dot":
                written.append(render(path, fmt))
    summary = (f"{revision}: {ex.states} states, {ex.edges} transitions explored in "
               f"{ex.seconds:.1f} s (depth {depth} from {len(ex.seeds)} seeds)")
    return written, summary


def diagrams_main(revisions: list[str], out: Path, formats: list[str] | None,
                  coverage_path: Path | None, depth: int, max_states: int,
                  console: Console, err: Console) -> int:
    try:
        fmts = chosen_formats(formats)
    except ValueError as e:
        err.print(f"[bold red]error:[/] {e}")
        return 2
    coverage: Coverage | None = None
    if coverage_path is not None:
        try:
            coverage = load_coverage(coverage_path)
        except CoverageError as e:
            err.print(f"[bold red]error:[/] {e}")
            return 2
        if len(revisions) > 1 or revisions[0] != coverage.revision:
            revisions = [coverage.revision]
            console.print(f"coverage file is for revision {coverage.revision}; drawing only it")
    for rev in revisions:
        try:
            written, summary = generate(rev, out, fmts, coverage, depth, max_states)
        except StateCapReached as e:
            err.print(f"[bold red]error:[/] {e}")
            return 1
        except (DotMissing, CoverageError) as e:
            err.print(f"[bold red]error:[/] {e}")
            return 2
        console.print(summary)
        for p in written:
            console.print(f"  wrote {p}")
    return 0
