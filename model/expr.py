"""One action definition, two meanings: concrete Python values or Z3 terms.

Every action of the model is a plain Python function over a `Ctx`. The function reads state
variables, states its guard with `ctx.require`, and writes effects with `ctx.set`. Conditional
effects go inside `with ctx.when(cond):`. Run with `ConcreteOps`, the same function computes
one successor state (or raises `Disabled`); run with `Z3Ops`, it yields the guard and the
effect terms from which the transition relation is built. Because both come from one body of
code, the concrete step function and the Z3 encoding cannot drift apart; the agreement test
(`tests/test_agreement.py`) checks that they do not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import z3

from .state import GEN_BITS

GEN_MAX = (1 << GEN_BITS) - 1  # the largest generation the encoding represents

Val = Any  # an int/bool (concrete) or a z3 term (symbolic)


class Disabled(Exception):
    """Raised by a concrete `require` whose condition is false: the action is not enabled."""


class Ops:
    """The operations an action may use on values. Subclasses give them a meaning."""

    symbolic = False

    def And(self, *xs: Val) -> Val:
        raise NotImplementedError

    def Or(self, *xs: Val) -> Val:
        raise NotImplementedError

    def Not(self, x: Val) -> Val:
        raise NotImplementedError

    def If(self, c: Val, a: Val, b: Val) -> Val:
        raise NotImplementedError

    def ult(self, a: Val, b: Val) -> Val:
        raise NotImplementedError

    def In(self, x: Val, values: Iterable[int]) -> Val:
        return self.Or(*[x == v for v in values])

    def Implies(self, a: Val, b: Val) -> Val:
        return self.Or(self.Not(a), b)


class ConcreteOps(Ops):
    symbolic = False

    def And(self, *xs: Val) -> Val:
        return all(xs)

    def Or(self, *xs: Val) -> Val:
        return any(xs)

    def Not(self, x: Val) -> Val:
        return not x

    def If(self, c: Val, a: Val, b: Val) -> Val:
        return a if c else b

    def ult(self, a: Val, b: Val) -> Val:
        return a < b


class Z3Ops(Ops):
    symbolic = True

    def And(self, *xs: Val) -> Val:
        ys = [x for x in xs if x is not True]
        if any(x is False for x in ys):
            return False
        if not ys:
            return True
        return ys[0] if len(ys) == 1 else z3.And(*ys)

    def Or(self, *xs: Val) -> Val:
        ys = [x for x in xs if x is not False]
        if any(x is True for x in ys):
            return True
        if not ys:
            return False
        return ys[0] if len(ys) == 1 else z3.Or(*ys)

    def Not(self, x: Val) -> Val:
        if isinstance(x, bool):
            return not x
        return z3.Not(x)

    def If(self, c: Val, a: Val, b: Val) -> Val:
        if c is True:
            return a
        if c is False:
            return b
        return z3.If(c, lift(a), lift(b))

    def ult(self, a: Val, b: Val) -> Val:
        if isinstance(a, int) and isinstance(b, int):
            return a < b
        return z3.ULT(a, b)


WIDTH = 6  # every non-boolean state variable is a 6-bit vector in the Z3 encoding


def lift(x: Val) -> Val:
    """A Python constant as a Z3 term of the encoding's sorts."""
    if isinstance(x, bool):
        return z3.BoolVal(x)
    if isinstance(x, int):
        return z3.BitVecVal(x, WIDTH)
    return x


CONCRETE = ConcreteOps()
Z3 = Z3Ops()


class Ctx:
    """The view an action has of one state: reads, guard conjuncts and effects.

    Reads see the action's own earlier writes (sequential code reads naturally). Indexed
    variables (`v_state.0`, `v_state.1`, ...) may be read and written with a symbolic index;
    the ops turn that into if-then-else chains over the slots.
    """

    def __init__(self, ops: Ops, state: dict[str, Val], sizes: dict[str, int]) -> None:
        self.ops = ops
        self.cur: dict[str, Val] = dict(state)
        self.pre = state
        self.sizes = sizes  # base name -> number of slots, for indexed reads
        self.guards: list[Val] = []
        self.labels: list[str] = []
        self.written: set[str] = set()
        self._path: list[Val] = []

    # -- reads -----------------------------------------------------------------
    def __getitem__(self, name: str) -> Val:
        return self.cur[name]

    def at(self, base: str, idx: Val, default: Val = 0) -> Val:
        """`base[idx]`; `default` when idx names no slot (e.g. the NONE reference)."""
        n = self.sizes[base]
        if isinstance(idx, int):
            return self.cur[f"{base}.{idx}"] if 0 <= idx < n else default
        out = default
        for k in reversed(range(n)):
            out = self.ops.If(idx == k, self.cur[f"{base}.{k}"], out)
        return out

    # -- guards ----------------------------------------------------------------
    def require(self, cond: Val, label: str = "") -> None:
        if self._path:
            cond = self.ops.Implies(self.ops.And(*self._path), cond)
        if not self.ops.symbolic:
            if not cond:
                raise Disabled(label)
            return
        if cond is True:
            return
        self.guards.append(cond)
        self.labels.append(label)

    def inc(self, val: Val, label: str = "generation stays in range") -> Val:
        """`val + 1` for a generation (or id counter), which must stay representable: the
        action is disabled where the sum would leave the range (in the concrete semantics
        and in the Z3 encoding alike, so the encoding never wraps a generation around to 0;
        docs/decisions.md)."""
        self.require(self.ops.ult(val, GEN_MAX), label)
        return val + 1

    # -- writes ----------------------------------------------------------------
    def set(self, name: str, val: Val) -> None:
        if name not in self.cur:
            raise KeyError(f"unknown state variable {name!r}")
        if self._path:
            val = self.ops.If(self.ops.And(*self._path), val, self.cur[name])
        self.cur[name] = val
        self.written.add(name)

    def set_at(self, base: str, idx: Val, val: Val) -> None:
        n = self.sizes[base]
        if isinstance(idx, int):
            if 0 <= idx < n:
                self.set(f"{base}.{idx}", val)
            return
        for k in range(n):
            with self.when(idx == k):
                self.set(f"{base}.{k}", val)

    @contextmanager
    def when(self, cond: Val) -> Iterator[None]:
        """Effects (and requirements) inside the block apply only where `cond` holds."""
        if cond is True:
            yield
            return
        if cond is False and not self.ops.symbolic:
            # still run the block so that symbolic/concrete code paths stay identical,
            # but every write inside becomes a no-op through If(False, ...)
            pass
        self._path.append(cond)
        try:
            yield
        finally:
            self._path.pop()

    def effects(self) -> dict[str, Val]:
        return {n: self.cur[n] for n in self.written}
