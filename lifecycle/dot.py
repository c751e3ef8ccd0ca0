"""Writing Graphviz DOT text and rendering it with the `dot` program.

The DOT text is written by hand (no pygraphviz) and is deterministic: callers pass nodes and
edges in a fixed order, and nothing here depends on hash order or the clock, so regenerating
a diagram from the same model gives the same bytes. SVG and PNG come from `dot` and may differ
between Graphviz versions; only the DOT files are compared in tests.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FORMATS = ("dot", "svg", "png")


def chosen_formats(formats: list[str] | None) -> tuple[str, ...]:
    """The output formats asked for (all when none); ValueError names any unknown one."""
    fmts = tuple(formats) if formats else FORMATS
    bad = [f for f in fmts if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown format {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    return fmts
FONT = "Helvetica"


class DotMissing(RuntimeError):
    """Graphviz is not installed (or not on PATH)."""


def q(text: str) -> str:
    """A DOT double-quoted string; newlines become centred line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def html(text: str) -> str:
    """Escape text for a DOT HTML-like label."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def attrs(pairs: dict[str, str]) -> str:
    """`[k1=v1, k2=v2]` with keys in the given order; values must already be quoted."""
    if not pairs:
        return ""
    return " [" + ", ".join(f"{k}={v}" for k, v in pairs.items()) + "]"


def header(name: str, title: str, rankdir: str = "TB") -> list[str]:
    return [
        f"digraph {q(name)} {{",
        f"  graph [label={q(title)}, labelloc=t, fontname={q(FONT)}, fontsize=16, "
        f"rankdir={rankdir}, nodesep=0.4, ranksep=0.5];",
        f"  node [fontname={q(FONT)}, fontsize=11];",
        f"  edge [fontname={q(FONT)}, fontsize=9];",
    ]


def render(dot_path: Path, fmt: str) -> Path:
    """Run `dot -T<fmt>` on a DOT file; the output goes next to it."""
    if fmt not in ("svg", "png"):
        raise ValueError(f"cannot render {fmt!r}; choose svg or png")
    exe = shutil.which("dot")
    if exe is None:
        raise DotMissing("Graphviz `dot` was not found on PATH: install graphviz "
                         "(e.g. `apt-get install graphviz`) or ask only for --format dot")
    out = dot_path.with_suffix(f".{fmt}")
    args = [exe, f"-T{fmt}", str(dot_path), "-o", str(out)]
    if fmt == "png":
        args.insert(2, "-Gdpi=110")
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"dot failed on {dot_path}: {proc.stderr.strip()}")
    return out
