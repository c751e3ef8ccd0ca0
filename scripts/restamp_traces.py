"""Re-stamp committed trace files after a model revision: re-run each trace's actions (the
same action names and nondeterministic choices, step by step from the fresh instance) on the
current model, and rewrite its states and its `#meta.model-revision`.

A trace whose action becomes disabled is not rewritten: the script names the file and the
step, and exits 1. A re-stamped trace keeps its meaning only if the tests that use it still
pass (a finding's last step must still break its invariant, a replay must still agree with
the implementation); re-stamping proves nothing by itself.

    .venv/bin/python scripts/restamp_traces.py FILE...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from model.actions import model_for
from model.step import apply
from model.trace import MODEL_REVISION, _config_from_meta, _label


def restamp(path: Path) -> str | None:
    """Rewrite `path` for the current model; the reason when it cannot be."""
    doc = json.loads(path.read_text())
    meta = doc["#meta"]
    cfg = _config_from_meta(meta)
    model = model_for(cfg)
    names = model.layout.names
    if doc["vars"] != names:
        return "its variables are not the model's"
    state = model.layout.fresh_state()
    changed = 0
    for i, rec in enumerate(doc["states"]):
        if i > 0:
            label = _label(rec["mbt::actionTaken"], rec["mbt::nondetPicks"], model)
            if label not in model.by_label:
                return f"step {i}: no action {label} in the model"
            nxt = apply(model, model.action_index(label), state)
            if nxt is None:
                return f"step {i}: {label} is not enabled"
            state = nxt
        changed += any(rec[n] != state[n] for n in names)
        for n in names:
            rec[n] = state[n]
    meta["model-revision"] = MODEL_REVISION
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{path}: {changed} of {len(doc['states'])} states changed")
    return None


def main(paths: list[str]) -> int:
    bad = 0
    for p in paths:
        why = restamp(Path(p))
        if why is not None:
            print(f"{p}: not re-stamped: {why}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
