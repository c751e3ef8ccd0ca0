"""The instance-updater lock (SPEC §5): acquire, inherit, release and commit-and-release.

Each function is one conditional UPDATE of the instance row, written against `Ctx` so that the
model's saga nodes call it like the datastore method it stands for. A lock token is the pair
(updater_id, updater_gen) the holder saw; every write of the lock columns bumps updater_gen,
which makes each of these statements a compare-and-swap.
"""

from __future__ import annotations

from .expr import Ctx, Val
from .state import NONE, Config
from .vocab import InstanceState


def instance_deleted(ctx: Ctx) -> Val:
    """`time_deleted IS NOT NULL`: the model sets it together with state Destroyed."""
    return ctx["i_state"] == InstanceState.DESTROYED


def instance_updater_lock(ctx: Ctx, lock_id: Val) -> tuple[Val, Val, Val]:
    """`instance_updater_lock(L)`: returns (query_ok, locked, locked_gen).

    Re-locking with the id already held is idempotent; another holder gives AlreadyLocked
    (query_ok and not locked); a deleted instance is a query error (not query_ok).
    """
    ops = ctx.ops
    alive = ops.Not(instance_deleted(ctx))
    free = ctx["i_updater"] == 0
    mine = ctx["i_updater"] == lock_id
    with ctx.when(ops.And(alive, free)):
        ctx.set("i_updater", lock_id)
        ctx.set("i_ugen", ctx.inc(ctx["i_ugen"]))
    locked = ops.And(alive, ops.Or(free, mine))
    return alive, locked, ctx["i_ugen"]


def instance_updater_inherit_lock(ctx: Ctx, parent_id: Val, parent_gen: Val,
                                  child_id: Val) -> tuple[Val, Val]:
    """`instance_updater_inherit_lock(parent, child)`: returns (ok, new_gen)."""
    ops = ctx.ops
    alive = ops.Not(instance_deleted(ctx))
    swap = ops.And(alive, ctx["i_ugen"] == parent_gen, ctx["i_updater"] == parent_id)
    # SPEC §5: not updated, but the row already names the child: success (idempotent), also
    # when the instance was deleted meanwhile (the check reads the row by id)
    already = ops.And(ops.Not(swap), ctx["i_updater"] == child_id)
    new_gen = ctx.inc(parent_gen)
    with ctx.when(swap):
        ctx.set("i_updater", child_id)
        ctx.set("i_ugen", new_gen)
    return ops.Or(swap, already), new_gen


def instance_updater_unlock(ctx: Ctx, cfg: Config, lock_id: Val, lock_gen: Val) -> Val:
    """`instance_updater_unlock({L, g})`: releases only the holder's own lock.

    Returns whether the call completed (Ok(true) or Ok(false)); the one error case
    (`updater_id == L` with another generation) makes a retried undo wait forever, so the
    caller treats it as "not yet done".
    """
    ops = ctx.ops
    alive = ops.Not(instance_deleted(ctx))
    if cfg.has("unlock-ignores-holder"):
        held = ops.And(alive, ctx["i_updater"] != 0)
        with ctx.when(held):
            ctx.set("i_updater", 0)
            ctx.set("i_ugen", ctx.inc(ctx["i_ugen"]))
        return True
    hit = ops.And(alive, ctx["i_updater"] == lock_id, ctx["i_ugen"] == lock_gen)
    odd = ops.And(alive, ctx["i_updater"] == lock_id, ctx["i_ugen"] != lock_gen)
    with ctx.when(hit):
        ctx.set("i_updater", 0)
        ctx.set("i_ugen", ctx.inc(lock_gen))
    return ops.Not(odd)


RUNTIME = ("i_state", "i_gen", "i_active", "i_target", "i_mig")


def instance_commit_update(ctx: Ctx, cfg: Config, lock_id: Val, lock_gen: Val,
                           new: dict[str, Val]) -> Val:
    """`instance_commit_update({L, g}, new_runtime)`: write the runtime and release the lock
    in one statement. Returns whether the saga node succeeds (Ok(true) or Ok(false))."""
    ops = ctx.ops
    alive = ops.Not(instance_deleted(ctx))
    gen_ok = ops.ult(ctx["i_gen"], new["i_gen"])
    # the CHECK constraint vmm_iff_active_propolis rejects a row that breaks it
    check = (new["i_state"] == InstanceState.VMM) == (new["i_active"] != NONE)
    if cfg.has("no-updater-lock"):
        hit = ops.And(alive, gen_ok, check)
        replay = ops.And(alive, ctx["i_gen"] == new["i_gen"])
        with ctx.when(hit):
            for f in RUNTIME:
                ctx.set(f, new[f])
        return ops.Or(hit, replay)
    holder = ops.And(ctx["i_updater"] == lock_id, ctx["i_ugen"] == lock_gen)
    if cfg.has("commit-ignores-generation"):
        hit = ops.And(alive, holder, check)
    else:
        hit = ops.And(alive, holder, gen_ok, check)
    # not updated: a replay of a commit that already succeeded is Ok(false)
    replay = ops.And(alive, ops.Not(hit), ctx["i_gen"] != new["i_gen"] - 1,
                     ctx["i_ugen"] != lock_gen)
    with ctx.when(hit):
        for f in RUNTIME:
            ctx.set(f, new[f])
        ctx.set("i_updater", 0)
        ctx.set("i_ugen", ctx.inc(lock_gen))
    return ops.Or(hit, replay)
