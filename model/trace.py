"""Trace files in the Informal Trace Format (ITF) and their replay on the model.

A trace file is the JSON trace format of Apalache and Quint (see docs/trace-format.md):
`vars` lists the state variables, `states` holds one object per state. As in Quint's
model-based-testing output, every state records the action that produced it
(`mbt::actionTaken`) and that action's nondeterministic choices (`mbt::nondetPicks`). The
first state is the fresh instance; the seed prefix and the counterexample follow, so a trace
replays from the very beginning. `#meta` names the model revision, the defects switched on,
the bounds, the seed, the invariant and the command that reproduces the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .actions import Model, model_for
from .saga import Action
from .state import Config
from .step import State, apply
from .vocab import MUTANTS, REVISIONS

FORMAT_DESCRIPTION = ("ITF (Apalache ADR-015) with Quint MBT fields mbt::actionTaken and "
                      "mbt::nondetPicks; see docs/trace-format.md")
MODEL_REVISION = "lifecycle-model/6"  # bump when the model's variables or actions change


class TraceError(ValueError):
    """A trace file that cannot be read or does not replay on the model."""


@dataclass
class LoadedTrace:
    cfg: Config
    meta: dict[str, Any]
    labels: list[str]  # action labels, one per step after the first state
    states: list[State]
    seed_len: int  # how many of the steps form the seed prefix


def _picks(a: Action) -> dict[str, Any]:
    return {k: v for k, v in a.args}


def write_itf(path: Path, cfg: Config, model: Model, labels: list[str], states: list[State],
              *, seed: str, seed_len: int, invariant: str | None, depth: int | None,
              command: str) -> None:
    names = model.layout.names
    out_states = []
    for i, st in enumerate(states):
        rec: dict[str, Any] = {"#meta": {"index": i}}
        if i == 0:
            rec["mbt::actionTaken"] = "init"
            rec["mbt::nondetPicks"] = {}
        else:
            a = model.actions[model.action_index(labels[i - 1])]
            rec["mbt::actionTaken"] = a.name
            rec["mbt::nondetPicks"] = _picks(a)
        for n in names:
            rec[n] = st[n]
        out_states.append(rec)
    doc = {
        "#meta": {
            "format": "ITF",
            "format-description": FORMAT_DESCRIPTION,
            "source": "instance-lifecycle model",
            "model-revision": MODEL_REVISION,
            "protocol-revision": cfg.revision,
            "mutants": list(cfg.mutants),
            "bounds": {"vmms": cfg.vmms, "migrations": cfg.migrations,
                       "start_sagas": cfg.start_sagas, "migrate_sagas": cfg.migrate_sagas,
                       "update_parents": cfg.update_parents,
                       "update_children": cfg.update_children,
                       "ambiguous_failures": cfg.ambiguous_failures,
                       # written only when on, so traces of the default model stay as they were
                       **({"stuck_undos": True} if cfg.stuck_undos else {})},
            "seed": seed,
            "seed-steps": seed_len,
            "invariant": invariant,
            "depth": depth,
            "actions": labels,
            "replay": command,
        },
        "params": [],
        "vars": names,
        "states": out_states,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def _config_from_meta(meta: dict[str, Any]) -> Config:
    rev = meta.get("protocol-revision")
    if rev not in REVISIONS:
        raise TraceError(f"#meta.protocol-revision is {rev!r}; expected one of "
                         f"{', '.join(REVISIONS)}")
    muts = meta.get("mutants", [])
    if not isinstance(muts, list) or any(m not in MUTANTS for m in muts):
        raise TraceError(f"#meta.mutants must list known defects, got {muts!r}")
    b = meta.get("bounds", {})
    if not isinstance(b, dict):
        raise TraceError("#meta.bounds must be an object")
    try:
        return Config(revision=rev, mutants=tuple(muts), **b)
    except (TypeError, ValueError) as e:
        raise TraceError(f"#meta.bounds: {e}") from None


def load_itf(path: Path) -> LoadedTrace:
    """Read a trace file and replay it on the model; every step must be an enabled action
    that produces exactly the recorded state."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise TraceError(f"{path}: not JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("states"), list):
        raise TraceError(f"{path}: not an ITF trace (no 'states' list)")
    meta = doc.get("#meta", {})
    if meta.get("model-revision") != MODEL_REVISION:
        raise TraceError(f"{path}: written by model revision {meta.get('model-revision')!r}, "
                         f"this is {MODEL_REVISION!r}; regenerate the trace")
    cfg = _config_from_meta(meta)
    model = model_for(cfg)
    names = model.layout.names
    if doc.get("vars") != names:
        raise TraceError(f"{path}: 'vars' does not match the model's state variables")
    states: list[State] = []
    labels: list[str] = []
    for i, rec in enumerate(doc["states"]):
        if not isinstance(rec, dict):
            raise TraceError(f"{path}: state {i} is not an object")
        missing = [n for n in names if n not in rec]
        if missing:
            raise TraceError(f"{path}: state {i} lacks {', '.join(missing[:5])}")
        st: State = {}
        for n in names:
            v = rec[n]
            if model.layout.kind(n) == "bool":
                if not isinstance(v, bool):
                    raise TraceError(f"{path}: state {i}: {n} must be a boolean, got {v!r}")
            elif isinstance(v, bool) or not isinstance(v, int):
                raise TraceError(f"{path}: state {i}: {n} must be an integer, got {v!r}")
            st[n] = v
        if i == 0:
            if st != model.layout.fresh_state():
                raise TraceError(f"{path}: state 0 is not the fresh instance")
        else:
            name = rec.get("mbt::actionTaken")
            picks = rec.get("mbt::nondetPicks", {})
            if not isinstance(name, str) or not isinstance(picks, dict):
                raise TraceError(f"{path}: state {i} lacks mbt::actionTaken/mbt::nondetPicks")
            label = _label(name, picks, model)
            idx = model.action_index(label) if label in model.by_label else None
            if idx is None:
                raise TraceError(f"{path}: step {i}: no action {label} in the model "
                                 f"({cfg.describe()})")
            nxt = apply(model, idx, states[-1])
            if nxt is None:
                raise TraceError(f"{path}: step {i}: {label} is not enabled")
            if nxt != st:
                diff = ", ".join(f"{k}: model {nxt[k]} vs file {st[k]}" for k in names
                                 if nxt[k] != st[k])
                raise TraceError(f"{path}: step {i}: {label} does not give the recorded "
                                 f"state ({diff})")
            labels.append(label)
        states.append(st)
    seed_len = int(meta.get("seed-steps", 0))
    return LoadedTrace(cfg, meta, labels, states, seed_len)


def _label(name: str, picks: dict[str, Any], model: Model) -> str:
    for a in model.actions:
        if a.name == name and _picks(a) == picks:
            return a.label
    return f"{name}({', '.join(f'{k}={v}' for k, v in picks.items())})"


def changed_fields(before: State, after: State) -> dict[str, tuple[Any, Any]]:
    return {k: (before[k], after[k]) for k in after if before[k] != after[k]}

