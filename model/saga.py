"""Steno saga semantics, written once for every saga of the model.

A saga is a sequence of nodes. Each node has an action (which reports success or failure)
and optionally an undo action. From one `SagaDef` this module generates the model's actions
for every saga slot:

* `ok`: the action runs and its outcome is recorded. On success the saga moves to the next
  node that is present in its DAG; on failure it starts unwinding.
* `crash`: the action took effect but the Nexus crashed before recording it; the node stays
  pending and is **re-executed** later (so it must be idempotent). An action whose code
  panics can only take this outcome (Nexus aborts on panic).
* `fail`: a transient error before the action touched anything; the saga unwinds.
* `ambiguous`: the action took effect and was still reported as failed (only for nodes whose
  SPEC description says this can happen).
* `unhealthy`: the node's sled-agent call met an unhealthy sled (an error other than a 4xx);
  the node does what its SPEC row says for that case (`Node.unhealthy`) and fails, as with
  `fail` (only for nodes whose SPEC row names such handling).
* `undo` / `undo-crash`: the undo of a node that *succeeded* runs (in reverse order); a crash
  in an undo makes it run again. The failed node's own undo never runs.
* `undo-unhealthy` (only with the opt-in fault class `Config.stuck_undos`, and only for undos
  whose SPEC row names such handling): the undo's sled-agent call met an unhealthy sled; the
  undo does what its row says for that case (`Node.undo_unhealthy`) and fails, and the saga is
  **stuck** (mode `STUCK`): no node of it runs again, nothing it still holds is released, and
  its slot stays taken. Steno leaves such a saga for an operator.

This is the "Saga semantics (Steno)" section of the SPEC. By default undos are retried until
they succeed, so an undo action is simply enabled until it has run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .expr import Ctx, Val
from .state import FWD, IDLE, NONE, STUCK, UNWIND, Layout


@dataclass(frozen=True)
class Outcome:
    """How a saga ended: `done`, or `unwound` after a failure at `failed_node`."""

    status: str
    failed_node: int | None = None
    injected: bool = False  # the failure was a transient error, not the action's own verdict


@dataclass
class Node:
    name: str
    spec: str
    action: Callable[[Ctx, int], Val]
    undo: Callable[[Ctx, int], None] | None = None
    present: Callable[[Ctx, int], Val] | None = None
    ambiguous: bool = False
    fails: bool = True
    crashes: bool = True
    ready: Callable[[Ctx, int], Val] | None = None  # extra guard for every forward outcome
    unhealthy: Callable[[Ctx, int], None] | None = None  # effect of the `unhealthy` outcome
    unhealthy_tags: tuple[str, ...] = ()  # extra tags of the unhealthy outcomes' actions
    # effect of the `undo-unhealthy` outcome (opt-in `Config.stuck_undos`), before the saga
    # is stuck
    undo_unhealthy: Callable[[Ctx, int], None] | None = None


@dataclass
class SagaDef:
    """A saga type: its nodes, its slot variables and what happens when it finishes."""

    kind: str  # e.g. "instance-start"
    prefix: str  # variable prefix, e.g. "st"
    slots: int
    nodes: list[Node]
    on_finish: Callable[[Ctx, int, Outcome], None] | None = None
    owner: Callable[[int], int] = field(default=lambda s: s % 2)

    _indexed: bool = True

    def var(self, field_name: str, s: int) -> str:
        return f"{self.prefix}_{field_name}.{s}" if self._indexed else f"{self.prefix}_{field_name}"


@dataclass(frozen=True)
class Action:
    """One action instance of the model: a named, fully parameterised transition."""

    name: str  # e.g. "instance-start.MARK_AS_STARTING"
    args: tuple[tuple[str, int | str], ...]
    actor: str
    fn: Callable[[Ctx], None]
    spec: str = ""
    tags: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        a = ", ".join(f"{k}={v}" for k, v in self.args)
        return f"{self.name}({a})" if a else self.name

    def arg(self, key: str) -> int | str | None:
        for k, v in self.args:
            if k == key:
                return v
        return None


def reset_slot(ctx: Ctx, layout: Layout, prefix: str, s: int | None) -> None:
    """Clear every variable of a saga slot (the slot becomes free)."""
    suffix = f".{s}" if s is not None else ""
    for v in layout.vars:
        if v.name.startswith(prefix + "_") and v.name.endswith(suffix) and (
            s is not None or "." not in v.name
        ):
            if v.kind == "bool":
                ctx.set(v.name, False)
            elif v.kind == "ref":
                ctx.set(v.name, NONE)
            else:
                ctx.set(v.name, IDLE if v.name.startswith(f"{prefix}_mode") else 0)


def saga_actions(sd: SagaDef, layout: Layout, with_ambiguous: bool = False,
                 with_stuck: bool = False) -> list[Action]:
    """Generate every node and undo action, with their outcomes, for every slot of `sd`."""
    out: list[Action] = []
    for s in range(sd.slots):
        out += _SlotActions(sd, layout, s).actions(with_ambiguous, with_stuck)
    return out


class _SlotActions:
    """The actions of one saga slot (a class, so that every closure binds its own slot)."""

    def __init__(self, sd: SagaDef, layout: Layout, s: int) -> None:
        self.sd, self.layout, self.s = sd, layout, s
        self.slot: int | None = s if sd._indexed else None
        self.mode = sd.var("mode", s)
        self.pc = sd.var("pc", s)
        self.rp = sd.var("rp", s)
        self.actor = f"{sd.kind}#{s}" if sd._indexed else sd.kind

    def present(self, ctx: Ctx, j: int) -> Val:
        p = self.sd.nodes[j].present
        return True if p is None else p(ctx, self.s)

    def finish(self, ctx: Ctx, outcome: Outcome) -> None:
        if self.sd.on_finish is not None:
            self.sd.on_finish(ctx, self.s, outcome)
        reset_slot(ctx, self.layout, self.sd.prefix, self.slot)

    def advance(self, ctx: Ctx, i: int) -> None:
        """Move to the next node present in the DAG, or finish."""
        ops = ctx.ops
        remaining: Val = True
        for j in range(i + 1, len(self.sd.nodes)):
            pj = self.present(ctx, j)
            with ctx.when(ops.And(remaining, pj)):
                ctx.set(self.pc, j)
            remaining = ops.And(remaining, ops.Not(pj))
        with ctx.when(remaining):
            self.finish(ctx, Outcome("done"))

    def unwind_from(self, ctx: Ctx, i: int, outcome: Outcome) -> None:
        """Go to the undo of the latest present node before `i` that has one, or finish."""
        ops = ctx.ops
        remaining: Val = True
        for j in reversed(range(i)):
            if self.sd.nodes[j].undo is None:
                continue
            pj = self.present(ctx, j)
            with ctx.when(ops.And(remaining, pj)):
                ctx.set(self.mode, UNWIND)
                ctx.set(self.pc, j)
            remaining = ops.And(remaining, ops.Not(pj))
        with ctx.when(remaining):
            self.finish(ctx, outcome)

    def guard(self, ctx: Ctx, i: int, mode: int) -> None:
        ctx.require(ctx[self.mode] == mode, "saga running forward" if mode == FWD
                    else "saga unwinding")
        ctx.require(ctx[self.pc] == i, "saga at this node")
        ready = self.sd.nodes[i].ready
        if mode == FWD and ready is not None:
            ctx.require(ready(ctx, self.s), f"{self.sd.nodes[i].name} ready")

    def actions(self, with_ambiguous: bool, with_stuck: bool = False) -> list[Action]:
        out: list[Action] = []
        for i, node in enumerate(self.sd.nodes):
            out += self.node_actions(i, node, with_ambiguous, with_stuck)
        return out

    def _action(self, name: str, oc: str, fn: Callable[[Ctx], None], node: Node,
                extra: tuple[str, ...] = ()) -> Action:
        args: tuple[tuple[str, int | str], ...] = (("outcome", oc),)
        if self.sd._indexed:
            args = (("saga", self.s),) + args
        return Action(name, args, self.actor, fn, node.spec,
                      frozenset({"saga", self.sd.kind, f"node:{node.name}", oc, *extra}))

    def node_actions(self, i: int, node: Node, with_ambiguous: bool,
                     with_stuck: bool = False) -> list[Action]:
        s = self.s
        name = f"{self.sd.kind}.{node.name}"

        def ok(ctx: Ctx) -> None:
            self.guard(ctx, i, FWD)
            ctx.set(self.rp, False)
            success, hold, panic = _result(node.action(ctx, s))
            ctx.require(ctx.ops.Not(panic), "the action does not panic")
            with ctx.when(ctx.ops.And(success, ctx.ops.Not(hold))):
                self.advance(ctx, i)
            with ctx.when(ctx.ops.Not(success)):
                self.unwind_from(ctx, i, Outcome("unwound", i, False))

        def crash(ctx: Ctx) -> None:
            self.guard(ctx, i, FWD)
            node.action(ctx, s)
            ctx.set(self.rp, True)

        def failing(effect: Callable[[Ctx, int], None] | None) -> Callable[[Ctx], None]:
            """`fail` (no effect) and `unhealthy` (the node's handling of that error, then
            failure)."""
            def fn(ctx: Ctx) -> None:
                self.guard(ctx, i, FWD)
                if not with_ambiguous:
                    # a replay that fails after the first attempt's effect landed is an
                    # ambiguous failure: only the opt-in fault class allows it
                    ctx.require(ctx.ops.Not(ctx[self.rp]), "first attempt")
                ctx.set(self.rp, False)
                if effect is not None:
                    effect(ctx, s)
                self.unwind_from(ctx, i, Outcome("unwound", i, True))

            return fn

        def ambiguous(ctx: Ctx) -> None:
            self.guard(ctx, i, FWD)
            panic = _result(node.action(ctx, s))[2]
            ctx.require(ctx.ops.Not(panic), "the action does not panic")
            self.unwind_from(ctx, i, Outcome("unwound", i, True))

        variants: list[tuple[str, Callable[[Ctx], None], tuple[str, ...]]] = [("ok", ok, ())]
        if node.crashes:
            variants.append(("crash", crash, ()))
        if node.fails:
            variants.append(("fail", failing(None), ()))
        if node.unhealthy is not None:
            variants.append(("unhealthy", failing(node.unhealthy), node.unhealthy_tags))
        if node.ambiguous and with_ambiguous:
            variants.append(("ambiguous", ambiguous, ()))
        out = [self._action(name, oc, fn, node, tags) for oc, fn, tags in variants]

        undo_fn = node.undo
        if undo_fn is not None:
            def undo(ctx: Ctx) -> None:
                self.guard(ctx, i, UNWIND)
                ctx.set(self.rp, False)
                undo_fn(ctx, s)
                self.unwind_from(ctx, i, Outcome("unwound"))

            def undo_crash(ctx: Ctx) -> None:
                self.guard(ctx, i, UNWIND)
                undo_fn(ctx, s)
                ctx.set(self.rp, True)

            out.append(self._action(f"{name}.undo", "undo", undo, node, ("undo",)))
            out.append(self._action(f"{name}.undo", "undo-crash", undo_crash, node, ("undo",)))
            stuck_fn = node.undo_unhealthy
            if with_stuck and stuck_fn is not None:
                def undo_unhealthy(ctx: Ctx) -> None:
                    # a retry after `undo-crash` may meet the sled unhealthy too: the first
                    # attempt's effect stays, this one adds only its own handling
                    self.guard(ctx, i, UNWIND)
                    ctx.set(self.rp, False)
                    stuck_fn(ctx, s)
                    ctx.set(self.mode, STUCK)

                out.append(self._action(f"{name}.undo", "undo-unhealthy", undo_unhealthy, node,
                                        ("undo", "stuck", *node.unhealthy_tags)))
        return out


def _result(r: Val) -> tuple[Val, Val, Val]:
    """A node action returns its success, or (success, hold) where `hold` means the node is
    still in progress (a parent waiting for its child saga), or (success, hold, panic) where
    `panic` means the code reached a Rust panic. Nexus is built with `panic = "abort"`, so a
    panic is a crash of the replica: only the `crash` outcome remains, and every recovery
    re-executes the node and panics again (docs/decisions.md "A panic is a crash")."""
    if isinstance(r, tuple):
        return (r[0], r[1], r[2]) if len(r) == 3 else (r[0], r[1], False)
    return r, False, False


def lowest_free(ctx: Ctx, base: str, n: int, k: int, free_value: Val) -> Val:
    """Slot `k` of `base` is free and every lower slot is taken (a symmetry reduction:
    new records and sagas always take the lowest free slot)."""
    ops = ctx.ops
    return ops.And(ctx[f"{base}.{k}"] == free_value,
                   *[ctx[f"{base}.{j}"] != free_value for j in range(k)])
