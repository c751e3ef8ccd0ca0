"""The sled-agent report path (SPEC §4.1): `notify_instance_updated`.

A report about VMM `k` carries its VMM state and generation plus the states of the migration
sides it takes part in. `vmm_and_migration_update_runtime` applies each record only when the
report's generation is strictly larger (and a migration side only when the reporting VMM is
that side's VMM); `update_saga_needed` then decides from what *really* changed whether an
update saga must start. The saga is fire-and-forget: the Nexus may crash right after the
database write, so every delivery action comes in a variant that starts no saga.
"""

from __future__ import annotations

from .expr import Ctx, Val
from .instance_update import spawn_update_saga
from .state import NONE, Config
from .vocab import MIGRATION_TERMINAL, MigrationState, VmmState, update_terminal_states


def _apply_side(ctx: Ctx, cfg: Config, k: Val, m: Val, side: str) -> tuple[Val, Val]:
    """Apply one migration side of VMM k's report; returns (updated, new side state)."""
    ops = ctx.ops
    sa_st, sa_gen = ctx.at(f"sa_m{side}_st", m), ctx.at(f"sa_m{side}_gen", m)
    db_gen = ctx.at(f"m_{side}_gen", m)
    owner = ctx.at(f"m_{side}", m, NONE)
    newer: Val = True if cfg.has("reports-ignore-generation") else ops.ult(db_gen, sa_gen)
    upd = ops.And(m != NONE, sa_st != MigrationState.ABSENT,
                  ctx.at("m_src_st", m) != MigrationState.ABSENT,
                  ops.Not(ctx.at("m_del", m, True)), owner == k, newer)
    with ctx.when(upd):
        ctx.set_at(f"m_{side}_st", m, sa_st)
        ctx.set_at(f"m_{side}_gen", m, sa_gen)
    return upd, sa_st


def vmm_and_migration_update_runtime(ctx: Ctx, cfg: Config, k: int, state: Val,
                                     gen: Val, migrations: bool = True) -> Val:
    """Apply a report about VMM `k` in one transaction; return `update_saga_needed`.
    Without `migrations` the report carries no migration sides (the watcher's made-up
    report for a vanished VMM, SPEC §4.9)."""
    ops = ctx.ops
    newer: Val = True if cfg.has("reports-ignore-generation") else ops.ult(ctx.at("v_gen", k),
                                                                           gen)
    vmm_updated = ops.And(ops.Not(ctx[f"v_del.{k}"]), ctx[f"v_state.{k}"] != VmmState.ABSENT,
                          newer)
    with ctx.when(vmm_updated):
        ctx.set(f"v_state.{k}", state)
        ctx.set(f"v_gen.{k}", gen)
    vmm_needed = ops.And(vmm_updated, ops.In(state, update_terminal_states(cfg.revision)))
    if not migrations:
        return vmm_needed
    in_upd, in_st = _apply_side(ctx, cfg, k, ctx[f"sa_min.{k}"], "tgt")
    out_upd, out_st = _apply_side(ctx, cfg, k, ctx[f"sa_mout.{k}"], "src")
    return ops.Or(
        vmm_needed,
        ops.And(in_upd, ops.In(in_st, MIGRATION_TERMINAL)),
        ops.And(out_upd, ops.In(out_st, MIGRATION_TERMINAL)),
    )


def notify_instance_updated(ctx: Ctx, cfg: Config, k: int, state: Val, gen: Val,
                            spawn: bool, migrations: bool = True) -> None:
    """The whole §4.1 path. With `spawn` the Nexus starts an update saga; without it, it
    starts none (no saga was needed, or the Nexus crashed before starting it)."""
    needed = vmm_and_migration_update_runtime(ctx, cfg, k, state, gen, migrations)
    if spawn:
        ctx.require(needed, "update_saga_needed")
        spawn_update_saga(ctx, cfg)
