"""`lifecycle explain TRACE`: a trace file as a sequence diagram and a table of changes."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from model.actions import model_for
from model.trace import LoadedTrace, TraceError, load_itf

from .dot import DotMissing, chosen_formats, render
from .sequence_diagram import changes_markdown, sequence_dot, step_views

DEFAULT_OUT = Path("out/explain")


def _violation_step(lt: LoadedTrace) -> int | None:
    """The step at which the trace's invariant first fails, if it names one."""
    from model.bmc import Step, Trace, first_violation
    from model.invariants import INVARIANTS
    from model.seeds import Seed

    inv = lt.meta.get("invariant")
    if inv not in INVARIANTS:
        return None
    model = model_for(lt.cfg)
    k = lt.seed_len
    seed = Seed(str(lt.meta.get("seed")), "", lt.labels[:k], lt.states[k])
    steps = [Step(model.action_index(lab), st)
             for lab, st in zip(lt.labels[k:], lt.states[k + 1:], strict=True)]
    at = first_violation(INVARIANTS[inv], model, Trace(lt.cfg, seed, steps))
    return None if at is None else k + at


def explain(trace: Path, out: Path, formats: tuple[str, ...], show_seed: bool
            ) -> tuple[list[Path], Table, str]:
    """Write <out>/<name>.sequence.dot (+ svg/png) and <name>.changes.md for a trace file."""
    lt = load_itf(trace)
    model = model_for(lt.cfg)
    views = step_views(model, lt.labels, lt.states, lt.seed_len)
    at = _violation_step(lt)
    inv = lt.meta.get("invariant") or "no invariant named"
    muts = ", ".join(lt.cfg.mutants) or "no defects"
    title = (f"{trace.name}\nrevision {lt.cfg.revision}, {muts}; invariant: {inv}"
             + (f" (violated at step {at})" if at is not None else ""))
    stem = trace.name.removesuffix(".json").removesuffix(".itf")
    out.mkdir(parents=True, exist_ok=True)
    dot_path = out / f"{stem}.sequence.dot"
    dot_path.write_text(sequence_dot(model, views, title, at, show_seed))
    written = [dot_path]
    for fmt in formats:
        if fmt != "dot":
            written.append(render(dot_path, fmt))
    md = out / f"{stem}.changes.md"
    md.write_text(changes_markdown(views, title.replace("\n", " — ")))
    written.append(md)

    table = Table(title=title.replace("\n", " — "))
    table.add_column("step", justify="right")
    table.add_column("actor")
    table.add_column("action")
    table.add_column("changed fields")
    for v in views:
        if v.in_seed and not show_seed:
            continue
        changes = "\n".join(c.text() for lane in v.changes for c in v.changes[lane])
        mark = " ✗" if v.number == at else ""
        style = "dim" if v.in_seed else ("bold red" if v.number == at else "")
        table.add_row(f"{v.number}{mark}", v.actor, v.label, changes, style=style)
    return written, table, title


def explain_main(trace: Path, out: Path, formats: list[str] | None, show_seed: bool,
                 console: Console, err: Console) -> int:
    try:
        fmts = chosen_formats(formats)
    except ValueError as e:
        err.print(f"[bold red]error:[/] {e}")
        return 2
    try:
        written, table, _ = explain(trace, out, fmts, show_seed)
    except TraceError as e:
        err.print(f"[bold red]error:[/] {e}")
        return 2
    except DotMissing as e:
        err.print(f"[bold red]error:[/] {e}")
        return 2
    console.print(table)
    for p in written:
        console.print(f"wrote {p}")
    return 0
