"""`UpdatesRequired::for_instance` (SPEC §4.6): what an update saga must do, as a pure function
of the snapshot it read while holding the lock.

The snapshot is `instance_fetch_all`: the instance plus its active VMM, target VMM and
migration, each join requiring `time_deleted IS NULL`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .expr import Ctx, Val
from .state import NET_DELETE, NET_NONE, NET_UPDATE, NONE, Config
from .vocab import InstanceState, MigrationState, VmmState, update_terminal_states


@dataclass
class Updates:
    required: Val
    panic: Val  # step C expected a target VMM row and found none
    new: dict[str, Val]
    destroy_active: Val
    destroy_target: Val
    deprovision: Val
    netop: Val
    netk: Val


def row_present(ctx: Ctx, base_state: str, base_del: str, k: Val, absent: int) -> Val:
    return ctx.ops.And(k != NONE, ctx.at(base_state, k) != absent,
                       ctx.ops.Not(ctx.at(base_del, k, True)))


def updates_required(ctx: Ctx, cfg: Config, observe: bool = False) -> Updates:
    """What an update saga that read this snapshot must do. An invariant that only looks at
    the answer passes `observe=True`: the new generation is then not guarded (`Ctx.inc`
    would disable an action at the top of the range, and an invariant is no action), so the
    concrete evaluation is total on every state, as the Z3 term is; no invariant reads
    `new["i_gen"]`."""
    ops = ctx.ops
    terminal = update_terminal_states(cfg.revision)
    act, tgt, mig = ctx["i_active"], ctx["i_target"], ctx["i_mig"]
    gen = ctx["i_gen"] + 1 if observe else ctx.inc(ctx["i_gen"])
    new = {"i_state": ctx["i_state"], "i_gen": gen, "i_active": act,
           "i_target": tgt, "i_mig": mig}
    required: Val = False
    netop: Val = NET_NONE
    netk: Val = NONE

    # step A: the active VMM is gone
    act_row = row_present(ctx, "v_state", "v_del", act, VmmState.ABSENT)
    act_dead = ops.And(act_row, ops.In(ctx.at("v_state", act), terminal))
    act_failed = ops.And(act_row, ctx.at("v_state", act) == VmmState.FAILED)
    destroy_active = ops.If(act_dead, act, NONE)
    new["i_active"] = ops.If(act_dead, NONE, new["i_active"])
    required = ops.Or(required, act_dead)

    # step B: the target VMM is gone
    tgt_row = row_present(ctx, "v_state", "v_del", tgt, VmmState.ABSENT)
    tgt_dead = ops.And(tgt_row, ops.In(ctx.at("v_state", tgt), terminal))
    destroy_target = ops.If(tgt_dead, tgt, NONE)
    new["i_target"] = ops.If(tgt_dead, NONE, new["i_target"])
    required = ops.Or(required, tgt_dead)

    # step C: a migration is linked
    mig_row = row_present(ctx, "m_src_st", "m_del", mig, MigrationState.ABSENT)
    src_st, tgt_st = ctx.at("m_src_st", mig), ctx.at("m_tgt_st", mig)
    failed = ops.And(mig_row, ops.Or(src_st == MigrationState.FAILED,
                                     tgt_st == MigrationState.FAILED))
    completed = ops.And(mig_row, ops.Not(failed),
                        ops.Or(src_st == MigrationState.COMPLETED,
                               tgt_st == MigrationState.COMPLETED))
    # failed: clear the ids and point the network back at a surviving source
    new["i_mig"] = ops.If(failed, NONE, new["i_mig"])
    new["i_target"] = ops.If(failed, NONE, new["i_target"])
    required = ops.Or(required, failed)
    repoint_src = ops.And(failed, ops.Not(act_dead), act_row)
    netop = ops.If(repoint_src, NET_UPDATE, netop)
    netk = ops.If(repoint_src, act, netk)
    # completed: the migration record's target becomes the active VMM. The snapshot's
    # target VMM row is the one the instance's target_propolis_id names; step C expects it
    # and panics when it is missing (the ids can disagree only after quirk Q1 or finding F1)
    mig_tgt = ctx.at("m_tgt", mig, NONE)
    move = ops.And(completed, new["i_active"] != mig_tgt)
    panic = ops.And(move, ops.Not(tgt_row))
    new["i_active"] = ops.If(move, mig_tgt, new["i_active"])
    netop = ops.If(move, NET_UPDATE, netop)
    netk = ops.If(move, mig_tgt, netk)
    required = ops.Or(required, move)
    drop_tgt = ops.And(completed, tgt_dead)
    new["i_active"] = ops.If(drop_tgt, NONE, new["i_active"])
    required = ops.Or(required, drop_tgt)
    if cfg.has("clear-ids-on-source-completed"):
        clear = completed
    else:
        clear = ops.And(completed, tgt_st == MigrationState.COMPLETED)
    new["i_mig"] = ops.If(clear, NONE, new["i_mig"])
    new["i_target"] = ops.If(clear, NONE, new["i_target"])
    required = ops.Or(required, clear)

    # step D: no active VMM left
    gone = new["i_active"] == NONE
    if cfg.rfd486:
        dead_state = ops.If(act_failed, int(InstanceState.FAILED), int(InstanceState.NO_VMM))
    else:
        dead_state = int(InstanceState.NO_VMM)
    new["i_state"] = ops.If(gone, dead_state, new["i_state"])
    netop = ops.If(gone, NET_DELETE, netop)
    netk = ops.If(gone, NONE, netk)
    return Updates(required, panic, new, destroy_active, destroy_target, gone, netop, netk)
