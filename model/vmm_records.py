"""Nexus's own writes to VMM rows and sled reservations (SPEC §1.2, §1.4, §2.1, §4.2 node 4).

Nexus writes a VMM's state only to mark it SagaUnwound (and, in rfd486, Failed); it soft
deletes a VMM only in a destroyable state; sled reservations are keyed by VMM id and
deleting one is idempotent.
"""

from __future__ import annotations

from .expr import Ctx, Val
from .state import Config
from .vocab import VmmState, mark_deleted_states


def sled_reservation_delete(ctx: Ctx, k: Val) -> None:
    """`sled_reservation_delete(vmm id)`: a plain DELETE by id."""
    ctx.set_at("v_res", k, False)


def vmm_mark_deleted(ctx: Ctx, cfg: Config, k: Val) -> None:
    """`vmm_mark_deleted`: set time_deleted if the VMM is in an accepted state and not yet
    deleted. Baseline accepts {Destroyed, Failed} only (gap G3)."""
    ok = ctx.ops.And(ctx.ops.In(ctx.at("v_state", k), mark_deleted_states(cfg.revision)),
                     ctx.ops.Not(ctx.at("v_del", k, True)))
    with ctx.when(ok):
        ctx.set_at("v_del", k, True)


def unwind_vmm_record(ctx: Ctx, cfg: Config, k: Val) -> None:
    """Undo of CREATE_VMM_RECORD in the start and migrate sagas.

    Baseline: SagaUnwound with gen = inserted gen + 1, guarded by `state_generation < gen`,
    then `vmm_mark_deleted`. rfd486 (#6455): `vmm_mark_saga_unwound`, unconditional but for
    time_deleted, gen + 1, no delete.
    """
    ops = ctx.ops
    alive = ops.And(ops.Not(ctx.at("v_del", k, True)),
                    ctx.at("v_state", k) != VmmState.ABSENT)
    if cfg.rfd486:
        with ctx.when(alive):
            ctx.set_at("v_state", k, VmmState.SAGA_UNWOUND)
            ctx.set_at("v_gen", k, ctx.inc(ctx.at("v_gen", k)))
        return
    with ctx.when(ops.And(alive, ops.ult(ctx.at("v_gen", k), 2))):
        ctx.set_at("v_state", k, VmmState.SAGA_UNWOUND)
        ctx.set_at("v_gen", k, 2)
    vmm_mark_deleted(ctx, cfg, k)


def create_vmm_record(ctx: Ctx, cfg: Config, k: Val, migrating: bool) -> None:
    """CREATE_VMM_RECORD: insert the VMM row at gen 1 (an idempotent upsert). Baseline starts
    it in Starting or Migrating; rfd486 (#6455) in Creating."""
    first = VmmState.CREATING if cfg.rfd486 else (
        VmmState.MIGRATING if migrating else VmmState.STARTING)
    with ctx.when(ctx.at("v_state", k) == VmmState.ABSENT):
        ctx.set_at("v_state", k, first)
        ctx.set_at("v_gen", k, 1)
