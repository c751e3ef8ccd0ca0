"""The concrete step function: the successors of a state, computed by running each action's
one definition on plain Python values."""

from __future__ import annotations

from collections.abc import Iterator

from .actions import Model
from .expr import CONCRETE, Ctx, Disabled
from .state import COUNTER_BITS, GEN_BITS

State = dict[str, int | bool]

GEN_MAX = (1 << GEN_BITS) - 1


class ModelBoundExceeded(RuntimeError):
    """A generation or counter left the range the Z3 encoding can represent."""


def _check_range(model: Model, s: State) -> None:
    for v in model.layout.vars:
        x = s[v.name]
        if v.kind == "counter":
            lo, hi = -(1 << (COUNTER_BITS - 1)), (1 << (COUNTER_BITS - 1)) - 1
        elif v.kind == "bool":
            continue
        else:
            lo, hi = 0, (1 << v.width) - 1
        if not lo <= int(x) <= hi:
            raise ModelBoundExceeded(f"{v.name}={x} is outside [{lo}, {hi}]")


def apply(model: Model, index: int, s: State) -> State | None:
    """The state after action `index`, or None when the action is not enabled in `s`."""
    ctx = Ctx(CONCRETE, s, model.layout.sizes)
    try:
        model.actions[index].fn(ctx)
    except Disabled:
        return None
    out = dict(s)
    for name, val in ctx.effects().items():
        out[name] = bool(val) if isinstance(val, bool) else int(val)
    _check_range(model, out)
    return out


def successors(model: Model, s: State) -> Iterator[tuple[int, State]]:
    for i in range(len(model.actions)):
        t = apply(model, i, s)
        if t is not None:
            yield i, t


def enabled(model: Model, s: State) -> list[int]:
    return [i for i, _ in successors(model, s)]
