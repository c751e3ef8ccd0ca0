"""A trace file as a sequence diagram and as a table of changed fields.

Each step of a trace is taken by one actor (the user, a saga, a Nexus, a sled-agent or a
background task) and changes fields owned by actors: the database rows, a sled-agent's own view
and its report in flight, a saga's log. The diagram has one lane per actor that appears, with
the database last; each step is one row, with a straight arrow from the acting lane to every other lane
whose fields the step changed, labelled with those changes. Steps that only move the actor's
own saga are a note on its lane. Changes to the provisioning counter are drawn in red.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.actions import Model
from model.display import decode
from model.saga import Action
from model.state import NONE
from model.step import State

from .dot import attrs, html, q

SAGA_PREFIX = {"cr": "instance-create", "dl": "instance-delete", "st": "instance-start",
               "mg": "instance-migrate", "up": "start-instance-update",
               "uc": "instance-update"}
UNSLOTTED = ("cr", "dl")
DB_PREFIXES = ("i_", "prov_", "v_", "m_")
BACKGROUND = ("instance-watcher", "instance-updater", "abandoned-vmm-reaper")
DATABASE = "database"
MODEL_ONLY = ("next_uuid",)  # the lock-id counter stands for UUID generation: no owner
MAX_CHANGES = 5  # per arrow; the table lists every change


@dataclass
class Change:
    field: str
    before: str
    after: str

    def text(self) -> str:
        return f"{self.field}: {self.before} → {self.after}"


@dataclass
class StepView:
    number: int
    label: str
    actor: str  # lane
    in_seed: bool
    changes: dict[str, list[Change]]  # lane -> changes of fields that lane owns


def _sled_lane(k: int) -> str:
    return f"sled-agent(vmm{k})"


def field_lane(name: str, s: State) -> str | None:
    """The lane that owns a state variable, given the state before the step."""
    base, _, slot = name.partition(".")
    if name in MODEL_ONLY:
        return None
    if base.startswith(("sa_msrc", "sa_mtgt")):
        ref = s[f"m_src.{slot}"] if base.startswith("sa_msrc") else s[f"m_tgt.{slot}"]
        return _sled_lane(int(ref)) if ref != NONE else "sled-agent"
    if base.startswith(("sa_", "rb_")):
        return _sled_lane(int(slot))
    prefix = base.split("_")[0]
    if prefix in SAGA_PREFIX and base != "m_src" and not name.startswith("m_"):
        kind = SAGA_PREFIX[prefix]
        return kind if prefix in UNSLOTTED else f"{kind}#{slot}"
    if base.startswith(DB_PREFIXES):
        return DATABASE
    return None


def actor_lane(a: Action, s: State) -> str:
    if a.actor.startswith("sled-agent(mig"):
        m = int(a.actor[len("sled-agent(mig"):-1])
        ref = s[f"m_src.{m}"] if a.name.endswith("source_completes") else s[f"m_tgt.{m}"]
        return _sled_lane(int(ref)) if ref != NONE else "sled-agent"
    return a.actor


def lane_rank(lane: str) -> tuple[int, str]:
    order = ["user", "instance-create", "instance-start", "instance-migrate",
             "instance-delete", "start-instance-update", "instance-update", "nexus",
             "sled-agent", *BACKGROUND, DATABASE]
    for k, prefix in enumerate(order):
        if lane == prefix or lane.startswith(prefix + "#") or lane.startswith(prefix + "("):
            return k, lane
    return len(order), lane


def step_views(model: Model, labels: list[str], states: list[State],
               seed_len: int) -> list[StepView]:
    out: list[StepView] = []
    for n, lab in enumerate(labels):
        before, after = states[n], states[n + 1]
        a = model.actions[model.action_index(lab)]
        lane = actor_lane(a, before)
        changes: dict[str, list[Change]] = {}
        for name in model.layout.names:
            if before[name] == after[name]:
                continue
            owner = field_lane(name, before) or lane
            changes.setdefault(owner, []).append(
                Change(name, decode(model, name, before[name]), decode(model, name, after[name])))
        out.append(StepView(n + 1, lab, lane, n < seed_len, changes))
    return out


def _lane_title(lane: str, model: Model) -> str:
    kind, _, slot = lane.partition("#")
    for sd in model.sagas:
        if sd.kind == kind and slot:
            return f"{lane}\n(on nexus#{sd.owner(int(slot)) % model.cfg.nexus_replicas})"
    return lane


def _change_text(changes: list[Change]) -> str:
    shown = [c.text() for c in changes[:MAX_CHANGES]]
    if len(changes) > MAX_CHANGES:
        shown.append(f"… {len(changes) - MAX_CHANGES} more")
    return "\n".join(shown)


def sequence_dot(model: Model, views: list[StepView], title: str, violated_at: int | None,
                 show_seed: bool = True) -> str:
    """DOT text of the sequence diagram; `violated_at` is the step number to mark."""
    rows = [v for v in views if show_seed or not v.in_seed]
    lanes = sorted({DATABASE} | {v.actor for v in rows}
                   | {lane for v in rows for lane in v.changes}, key=lane_rank)
    lid = {lane: f"L{k}" for k, lane in enumerate(lanes)}
    lines = [
        'digraph "sequence" {',
        f"  graph [label={q(title)}, labelloc=t, fontname=\"Helvetica\", fontsize=14, "
        "rankdir=TB, newrank=true, splines=line, nodesep=1.2, ranksep=0.45, "
        "forcelabels=true];",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    # lane headers, in order
    head = ["  { rank=same;", "    step_h [shape=plaintext, label=\"step\"];"]
    for lane in lanes:
        color = "lightyellow" if lane == DATABASE else "aliceblue"
        head.append(f"    {lid[lane]}_h{attrs({'shape': 'box', 'style': q('filled,rounded'), 'fillcolor': color, 'label': q(_lane_title(lane, model))})};")
    head.append("  }")
    lines += head
    chain = " -> ".join(["step_h"] + [f"{lid[lane]}_h" for lane in lanes])
    lines.append(f"  {chain} [style=invis];")
    prev = {lane: f"{lid[lane]}_h" for lane in lanes}
    prev_step = "step_h"
    for v in rows:
        r = v.number
        grey = v.in_seed
        fc = "gray55" if grey else ("red3" if r == violated_at else "black")
        row = ["  { rank=same;"]
        step_label = f"{r}" + (" (seed)" if grey else "") + ("  ✗" if r == violated_at else "")
        row.append(f"    s{r} [shape=plaintext, fontcolor={fc}, label={q(step_label)}];")
        for lane in lanes:
            node = f"{lid[lane]}_{r}"
            a: dict[str, str] = {"shape": "point", "width": "0.06", "color": "gray60"}
            if lane == v.actor:
                short = v.label.split("(")[0]
                args = v.label[len(short):]
                text = html(short)
                if args:
                    text += f'<br/><font point-size="8">{html(args)}</font>'
                a = {"shape": "box", "style": "rounded", "fontsize": "9", "color": fc,
                     "fontcolor": fc, "height": "0.2", "margin": "0.04", "label": f"<{text}>"}
            row.append(f"    {node}{attrs(a)};")
        row.append("  }")
        lines += row
        order = " -> ".join([f"s{r}"] + [f"{lid[lane]}_{r}" for lane in lanes])
        lines.append(f"  {order} [style=invis];")
        lines.append(f"  {prev_step} -> s{r} [style=invis];")
        prev_step = f"s{r}"
        for lane in lanes:
            lines.append(f"  {prev[lane]} -> {lid[lane]}_{r} [arrowhead=none, style=dashed, "
                         "color=gray70, weight=100];")
            prev[lane] = f"{lid[lane]}_{r}"
        for lane in sorted(v.changes, key=lane_rank):
            if lane == v.actor:
                continue
            changes = v.changes[lane]
            red = any(c.field.startswith("prov_") for c in changes)
            color = "gray55" if grey else ("red3" if red or r == violated_at else "black")
            ea = {"xlabel": q(_change_text(changes)), "color": color, "fontcolor": color,
                  "constraint": "false"}
            if red and not grey:
                ea["penwidth"] = "2"
            lines.append(f"  {lid[v.actor]}_{r} -> {lid[lane]}_{r}{attrs(ea)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def changes_markdown(views: list[StepView], title: str) -> str:
    out = [f"# {title}", "", "| step | actor | action | changed fields |", "|---|---|---|---|"]
    for v in views:
        ch = "<br>".join(c.text() for lane in sorted(v.changes, key=lane_rank)
                         for c in v.changes[lane])
        seed = " (seed)" if v.in_seed else ""
        out.append(f"| {v.number}{seed} | {v.actor} | `{v.label}` | {ch} |")
    return "\n".join(out) + "\n"
