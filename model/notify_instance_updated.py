"""The sled-agent report path (SPEC §4.1): `notify_instance_updated`.

A report about VMM `k` carries its VMM state and generation plus the states of the migration
sides it takes part in. `vmm_and_migration_update_runtime` applies each record only when the
report's generation is strictly larger (and a migration side only when the reporting VMM is
that side's VMM). A side whose row is soft-deleted (Gone) or names another VMM makes the whole
transaction fail: nothing is written and no saga starts (`report_rejected`).
`update_saga_needed` then decides from what *really* changed whether an update saga must
start. The saga is fire-and-forget: the Nexus may crash right after the
database write, so every delivery action comes in a variant that starts no saga.
"""

from __future__ import annotations

from .expr import Ctx, Val
from .instance_update import spawn_update_saga
from .state import NONE, Config
from .vocab import MIGRATION_TERMINAL, MigrationState, VmmState, update_terminal_states


def _side(ctx: Ctx, cfg: Config, k: Val, m: Val, side: str) -> tuple[Val, Val, Val]:
    """One migration side of VMM k's report: (whether the guarded write updates the row, the
    reported side state, whether the row makes the whole report an error)."""
    ops = ctx.ops
    sa_st, sa_gen = ctx.at(f"sa_m{side}_st", m), ctx.at(f"sa_m{side}_gen", m)
    db_gen = ctx.at(f"m_{side}_gen", m)
    owner = ctx.at(f"m_{side}", m, NONE)
    deleted = ctx.at("m_del", m, True)
    newer: Val = True if cfg.has("reports-ignore-generation") else ops.ult(db_gen, sa_gen)
    named = ops.And(m != NONE, sa_st != MigrationState.ABSENT,
                    ctx.at("m_src_st", m) != MigrationState.ABSENT)
    upd = ops.And(named, ops.Not(deleted), owner == k, newer)
    # SPEC §4.1 step 1: a row that was not updated because it is soft-deleted (Gone), or whose
    # VMM column names another VMM, fails the whole transaction
    rejected = ops.And(named, ops.Or(deleted, owner != k))
    return upd, sa_st, rejected


def report_rejected(ctx: Ctx, cfg: Config, k: int) -> Val:
    """Whether `vmm_and_migration_update_runtime` fails for VMM k's report (its migration
    sides as the sled holds them now): nothing is written, the caller gets the error."""
    rej_in = _side(ctx, cfg, k, ctx[f"sa_min.{k}"], "tgt")[2]
    rej_out = _side(ctx, cfg, k, ctx[f"sa_mout.{k}"], "src")[2]
    return ctx.ops.Or(rej_in, rej_out)


def vmm_and_migration_update_runtime(ctx: Ctx, cfg: Config, k: int, state: Val,
                                     gen: Val, migrations: bool = True) -> Val:
    """Apply a report about VMM `k` in one transaction; return `update_saga_needed`.
    Without `migrations` the report carries no migration sides (the watcher's made-up
    report for a vanished VMM, SPEC §4.9). A report with a migration side the database
    refuses (a soft-deleted row: Gone; a row naming another VMM) writes nothing at all."""
    ops = ctx.ops
    sides: list[tuple[Val, Val, Val, str]] = []
    ok: Val = True
    if migrations:
        for ref, side in (("sa_min", "tgt"), ("sa_mout", "src")):
            m = ctx[f"{ref}.{k}"]
            upd, st, rejected = _side(ctx, cfg, k, m, side)
            sides.append((m, upd, st, side))
            ok = ops.And(ok, ops.Not(rejected))
    newer: Val = True if cfg.has("reports-ignore-generation") else ops.ult(ctx.at("v_gen", k),
                                                                           gen)
    vmm_updated = ops.And(ok, ops.Not(ctx[f"v_del.{k}"]),
                          ctx[f"v_state.{k}"] != VmmState.ABSENT, newer)
    needed = ops.And(vmm_updated, ops.In(state, update_terminal_states(cfg.revision)))
    for m, upd, st, side in sides:
        sa_gen = ctx.at(f"sa_m{side}_gen", m)
        with ctx.when(ops.And(ok, upd)):
            ctx.set_at(f"m_{side}_st", m, st)
            ctx.set_at(f"m_{side}_gen", m, sa_gen)
        needed = ops.Or(needed, ops.And(ok, upd, ops.In(st, MIGRATION_TERMINAL)))
    with ctx.when(vmm_updated):
        ctx.set(f"v_state.{k}", state)
        ctx.set(f"v_gen.{k}", gen)
    return needed


def notify_instance_updated(ctx: Ctx, cfg: Config, k: int, state: Val, gen: Val,
                            spawn: bool, migrations: bool = True) -> None:
    """The whole §4.1 path. With `spawn` the Nexus starts an update saga; without it, it
    starts none (no saga was needed, or the Nexus crashed before starting it)."""
    needed = vmm_and_migration_update_runtime(ctx, cfg, k, state, gen, migrations)
    if spawn:
        ctx.require(needed, "update_saga_needed")
        spawn_update_saga(ctx, cfg)
