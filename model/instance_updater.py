"""Background task `instance-updater` (SPEC §4.7): the periodic sweep that starts an update saga
for every unlocked instance whose active VMM is gone or whose migration has ended.

It is what guarantees that no needed update is lost when a notification's saga was never
started (a Nexus crash after the database write) or lost the lock race (R16, gap G5).
"""

from __future__ import annotations

from .expr import Ctx, Val
from .instance_update import spawn_update_saga
from .saga import Action
from .state import NONE, Config
from .updater_lock import instance_deleted
from .vocab import MIGRATION_TERMINAL, MigrationState, VmmState


def sweep_matches(ctx: Ctx, cfg: Config) -> Val:
    """`find_instances_with_destroyed_active_vmms` (rfd486: by active VMM state, Destroyed and
    Failed) or `find_instances_with_terminated_active_migrations`, unlocked only."""
    ops = ctx.ops
    a, m = ctx["i_active"], ctx["i_mig"]
    states = (VmmState.DESTROYED, VmmState.FAILED) if cfg.rfd486 else (VmmState.DESTROYED,)
    q1 = ops.And(a != NONE, ops.In(ctx.at("v_state", a), states),
                 ops.Not(ctx.at("v_del", a, True)))
    q2 = ops.And(m != NONE, ctx.at("m_src_st", m) != MigrationState.ABSENT,
                 ops.Or(ops.In(ctx.at("m_src_st", m), MIGRATION_TERMINAL),
                        ops.In(ctx.at("m_tgt_st", m), MIGRATION_TERMINAL)))
    return ops.And(ops.Not(instance_deleted(ctx)), ctx["i_updater"] == 0, ops.Or(q1, q2))


def build_instance_updater(cfg: Config) -> list[Action]:
    if cfg.has("no-background-updater"):
        return []
    def sweep(ctx: Ctx) -> None:
        ctx.require(sweep_matches(ctx, cfg), "the sweep finds the instance")
        spawn_update_saga(ctx, cfg)

    return [Action("instance-updater.activate", (), "instance-updater", sweep, "§4.7",
                   frozenset({"background"}))]
