"""The Z3 transition relation T(s, a, s'), built from the same action definitions as the
concrete step function.

Every action is run once on symbolic template variables; its guard and effect terms are kept.
One step of the relation says: the chosen action number `a` is one whose guard holds, and
every variable takes the value that action gives it (or keeps its value). Steps of a path
are copies of the template with fresh variables, made by substitution.
"""

from __future__ import annotations

from dataclasses import dataclass

import z3

from .actions import Model
from .expr import WIDTH, Z3, Ctx, Val, lift
from .state import Layout

ACT_BITS = 10


def mk_var(layout: Layout, name: str, suffix: str) -> z3.ExprRef:
    if layout.kind(name) == "bool":
        return z3.Bool(f"{name}{suffix}")
    return z3.BitVec(f"{name}{suffix}", WIDTH)


def to_z3(layout: Layout, name: str, value: int | bool) -> z3.ExprRef:
    if layout.kind(name) == "bool":
        return z3.BoolVal(bool(value))
    return z3.BitVecVal(int(value), WIDTH)


def from_z3(layout: Layout, name: str, value: z3.ExprRef) -> int | bool:
    kind = layout.kind(name)
    if kind == "bool":
        return z3.is_true(value)
    if kind == "counter":
        return value.as_signed_long()  # type: ignore[no-any-return, attr-defined]
    return value.as_long()  # type: ignore[no-any-return, attr-defined]


class Substitution:
    """A fixed renaming of template variables, applied with Z3's C API in one call.

    `z3.substitute` re-checks the sorts of every pair in Python on every call; a BMC run
    substitutes the same few hundred pairs into every property at every depth, so the pairs
    are checked once here and kept as C arrays.
    """

    def __init__(self, pairs: list[tuple[z3.ExprRef, z3.ExprRef]]) -> None:
        for a, b in pairs:
            if not a.sort().eq(b.sort()):
                raise z3.Z3Exception(f"substitution of {a} by {b} changes the sort")
        self.ctx = pairs[0][0].ctx if pairs else z3.main_ctx()
        self.keep = pairs  # the arrays below borrow these ASTs
        self.n = len(pairs)
        self.src = (z3.z3core.Ast * self.n)()
        self.dst = (z3.z3core.Ast * self.n)()
        for i, (a, b) in enumerate(pairs):
            self.src[i] = a.as_ast()
            self.dst[i] = b.as_ast()

    def __call__(self, e: z3.ExprRef) -> z3.ExprRef:
        ref = z3.z3core.Z3_substitute(self.ctx.ref(), e.as_ast(), self.n, self.src, self.dst)
        return z3.z3._to_expr_ref(ref, self.ctx)


@dataclass
class StepVars:
    """The variables of one state of a path."""

    state: dict[str, z3.ExprRef]


class Encoding:
    """Guards, effects and the one-step relation of a model, over template variables."""

    def __init__(self, model: Model) -> None:
        if len(model.actions) >= 1 << ACT_BITS:
            raise ValueError("too many actions for the action selector")
        self.model = model
        layout = model.layout
        self.layout = layout
        self.cur = {n: mk_var(layout, n, "") for n in layout.names}
        self.nxt = {n: mk_var(layout, n, "'") for n in layout.names}
        self.act = z3.BitVec("act", ACT_BITS)
        self.guards: list[z3.BoolRef] = []
        self.guard_parts: list[list[tuple[str, Val]]] = []
        self.effects: list[dict[str, Val]] = []
        for a in model.actions:
            ctx = Ctx(Z3, self.cur, layout.sizes)
            a.fn(ctx)
            self.guard_parts.append(list(zip(ctx.labels, ctx.guards, strict=True)))
            g = Z3.And(*ctx.guards)
            self.guards.append(z3.simplify(lift(g)))
            eff = {}
            for n, v in ctx.effects().items():
                v = z3.simplify(lift(v))
                if not v.eq(self.cur[n]):
                    eff[n] = v
            self.effects.append(eff)
        self.relation = self._relation()
        self.reads = [self._reads(i) for i in range(len(self.guards))]
        self.writes = [frozenset(eff) for eff in self.effects]
        self._later: list[list[tuple[int, int]]] | None = None
        self.templates: dict[str, z3.BoolRef] = {}  # properties by id, filled by bmc.Checker

    def _reads(self, i: int) -> frozenset[str]:
        """The state variables action `i`'s guard and effects depend on."""
        names = {v.get_id(): n for n, v in self.cur.items()}
        out: set[str] = set()
        seen: set[int] = set()
        todo: list[z3.ExprRef] = [self.guards[i], *self.effects[i].values()]
        while todo:
            e = todo.pop()
            k = e.get_id()
            if k in seen:
                continue
            seen.add(k)
            if k in names:
                out.add(names[k])
            else:
                todo.extend(e.children())
        return frozenset(out)

    def independent(self, i: int, j: int) -> bool:
        """Actions that neither write what the other reads or writes: from any state, running
        them in either order enables the same steps and ends in the same state."""
        wi, wj = self.writes[i], self.writes[j]
        return not (wi & (self.reads[j] | wj)) and not (wj & self.reads[i])

    def order(self, first: z3.ExprRef, second: z3.ExprRef) -> z3.BoolRef:
        """Partial-order reduction for two consecutive steps: an action may not be followed
        by an independent action with a smaller number. Every path has an equivalent one
        (same length, same end state, every prefix ending in a reachable state) without such
        a pair: its lexicographically least reordering."""
        if self._later is None:
            self._later = []
            for i in range(len(self.guards)):
                runs: list[tuple[int, int]] = []
                for j in range(i):
                    if not self.independent(i, j):
                        continue
                    if runs and runs[-1][1] == j - 1:
                        runs[-1] = (runs[-1][0], j)
                    else:
                        runs.append((j, j))
                self._later.append(runs)
        parts = []
        for i, runs in enumerate(self._later):
            if not runs:
                continue
            inside = [second == lo if lo == hi else
                      z3.And(z3.UGE(second, lo), z3.ULE(second, hi)) for lo, hi in runs]
            parts.append(z3.Implies(first == i, z3.Not(z3.Or(*inside))))
        return z3.And(*parts)

    def _relation(self) -> z3.BoolRef:
        parts = [z3.ULT(self.act, len(self.guards))]
        parts += [z3.Implies(self.act == i, g) for i, g in enumerate(self.guards)]
        writers: dict[str, list[int]] = {n: [] for n in self.layout.names}
        for i, eff in enumerate(self.effects):
            for n in eff:
                writers[n].append(i)
        for n in self.layout.names:
            rhs: z3.ExprRef = self.cur[n]
            for i in reversed(writers[n]):
                rhs = z3.If(self.act == i, self.effects[i][n], rhs)
            parts.append(self.nxt[n] == rhs)
        return z3.And(*parts)

    # ------------------------------------------------------------------ paths
    def state_vars(self, t: int) -> dict[str, z3.ExprRef]:
        return {n: mk_var(self.layout, n, f"@{t}") for n in self.layout.names}

    def act_var(self, t: int) -> z3.BitVecRef:
        return z3.BitVec(f"act@{t}", ACT_BITS)

    def renaming(self, pre: dict[str, z3.ExprRef], act: z3.ExprRef,
                 post: dict[str, z3.ExprRef]) -> Substitution:
        """The substitution of one path step's variables for the template variables."""
        pairs = [(self.cur[n], pre[n]) for n in self.layout.names]
        pairs += [(self.nxt[n], post[n]) for n in self.layout.names]
        pairs.append((self.act, act))
        return Substitution(pairs)

    def step(self, pre: dict[str, z3.ExprRef], act: z3.ExprRef,
             post: dict[str, z3.ExprRef],
             renaming: Substitution | None = None) -> z3.BoolRef:
        r = renaming or self.renaming(pre, act, post)
        return r(self.relation)  # type: ignore[return-value]

    def equals(self, vars: dict[str, z3.ExprRef], state: dict[str, int | bool]) -> z3.BoolRef:
        return z3.And(*[vars[n] == to_z3(self.layout, n, state[n]) for n in self.layout.names])

    def read_state(self, m: z3.ModelRef, vars: dict[str, z3.ExprRef]) -> dict[str, int | bool]:
        return {n: from_z3(self.layout, n, m.eval(vars[n], model_completion=True))
                for n in self.layout.names}
