"""State diagrams drawn from the explored model: one DOT file per projection and revision.

See docs/diagrams.md for what each diagram shows, how the exploration is bounded and the
coverage-file format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.explore import Exploration
from model.projections import PROJECTIONS, AbstractDiagram, project_exploration, trace_edges
from model.vocab import REVISIONS

from .dot import attrs, header, html, q

COVERAGE_FORMAT = "lifecycle-coverage/1"


class CoverageError(ValueError):
    """A coverage file that cannot be read."""


@dataclass
class Coverage:
    """What the conformance suite exercised: action labels or names, and trace files whose
    every step counts as covered."""

    revision: str
    actions: set[str] = field(default_factory=set)
    traces: list[Path] = field(default_factory=list)
    _trace_edges: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def covered(self, d: AbstractDiagram, ex: Exploration, edge: tuple[str, str]) -> bool:
        for i in d.edge_actions.get(edge, set()):
            a = ex.model.actions[i]
            if a.label in self.actions or a.name in self.actions:
                return True
        return edge in self.edges_from_traces(d)

    def edges_from_traces(self, d: AbstractDiagram) -> set[tuple[str, str]]:
        name = d.projection.name
        if name not in self._trace_edges:
            from model.actions import model_for
            from model.trace import TraceError, load_itf

            got: set[tuple[str, str]] = set()
            for path in self.traces:
                try:
                    lt = load_itf(path)
                except TraceError as e:
                    raise CoverageError(f"coverage trace {path}: {e}") from None
                if lt.cfg.revision != self.revision:
                    continue
                got |= trace_edges(d.projection, model_for(lt.cfg), lt.labels, lt.states)
            self._trace_edges[name] = got
        return self._trace_edges[name]


def load_coverage(path: Path) -> Coverage:
    """Read a coverage file (format in docs/diagrams.md)."""
    try:
        doc: Any = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CoverageError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise CoverageError(f"{path}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != COVERAGE_FORMAT:
        raise CoverageError(f"{path}: 'format' must be {COVERAGE_FORMAT!r}")
    rev = doc.get("revision")
    if rev not in REVISIONS:
        raise CoverageError(f"{path}: 'revision' must be one of {', '.join(REVISIONS)}")
    acts = doc.get("actions", [])
    traces = doc.get("traces", [])
    if not isinstance(acts, list) or not all(isinstance(a, str) for a in acts):
        raise CoverageError(f"{path}: 'actions' must be a list of strings")
    if not isinstance(traces, list) or not all(isinstance(t, str) for t in traces):
        raise CoverageError(f"{path}: 'traces' must be a list of paths")
    base = Path(path).parent
    return Coverage(rev, set(acts), [(base / t) if not Path(t).is_absolute() else Path(t)
                                     for t in traces])


def diagram_dot(d: AbstractDiagram, ex: Exploration, coverage: Coverage | None = None) -> str:
    """The DOT text of one projected diagram (deterministic)."""
    p = d.projection
    title = (f"{p.title}\nrevision {ex.cfg.revision}: {ex.states} states explored "
             f"(depth {ex.depth} from {len(ex.seeds)} seeds)")
    if coverage is not None:
        title += "\nsolid: covered by the conformance suite; dashed: not covered"
    lines = header(p.name, title)
    ids = {v: f"n{k}" for k, v in enumerate(d.ordered_nodes())}

    def node_line(v: str) -> str:
        details = sorted(d.nodes[v])
        head = "<br/>".join(f"<b>{html(x)}</b>" for x in v.split("\n"))
        if details:
            small = "<br/>".join(html(x) for x in details)
            label = f'<{head}<br/><font point-size="9">{small}</font>>'
        else:
            label = f"<{head}>"
        shape = "box" if details else "ellipse"
        return f"  {ids[v]}{attrs({'label': label, 'shape': shape, 'style': 'rounded' if shape == 'box' else 'solid'})};"

    if p.clusters:
        for k, (prefix, ctitle) in enumerate(sorted(p.clusters.items())):
            lines.append(f"  subgraph cluster_{k} {{")
            lines.append(f"    label={q(ctitle)}; style=rounded; color=gray60;")
            for v in d.ordered_nodes():
                if v.startswith(prefix):
                    lines.append("  " + node_line(v))
            lines.append("  }")
        rest = [v for v in d.ordered_nodes() if not any(v.startswith(x) for x in p.clusters)]
    else:
        rest = d.ordered_nodes()
    for v in rest:
        lines.append(node_line(v))
    order = {v: k for k, v in enumerate(d.ordered_nodes())}
    for edge in sorted(d.edges, key=lambda e: (order[e[0]], order[e[1]])):
        a: dict[str, str] = {"label": q("\n".join(sorted(d.edges[edge])))}
        if coverage is not None and not coverage.covered(d, ex, edge):
            a["style"] = "dashed"
            a["color"] = "gray40"
        lines.append(f"  {ids[edge[0]]} -> {ids[edge[1]]}{attrs(a)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def all_diagrams(ex: Exploration, coverage: Coverage | None = None) -> dict[str, str]:
    """Every projection's DOT text for one exploration, by file stem."""
    return {p.name: diagram_dot(project_exploration(p, ex), ex, coverage) for p in PROJECTIONS}
