"""Simulated sled-agents (SPEC §2.1, §2.5, §4.1): what each sled knows about its VMMs and
their migrations, and the reports it pushes to Nexus.

The sled-agent owns a VMM's generation: every observation it makes bumps it by one. When a VMM
dies (Destroyed or Failed) the sled also marks the VMM's unfinished migrations Failed. Each
VMM has one report in flight (`rb_*`): the sled sets it when something changes and it is
empty; it may be delivered late, more than once (`keep`), or after a newer state already
reached Nexus through the instance-watcher, which is how stale reports arise. Real sled-agents
never report `Stopped` (Propolis Stopped maps to Stopping), so the model never produces it.
"""

from __future__ import annotations

from .expr import Ctx, Val
from .instance_update import spawn_update_saga
from .notify_instance_updated import (
    notify_instance_updated,
    report_rejected,
    vmm_and_migration_update_runtime,
)
from .saga import Action
from .state import NONE, Config
from .vocab import MigrationState as M
from .vocab import VmmState as V

LIVE = (V.STARTING, V.RUNNING, V.STOPPING, V.REBOOTING, V.MIGRATING)
UNFINISHED = (M.PENDING, M.IN_PROGRESS)

# spontaneous Propolis transitions: (target state, states it can come from)
TRANSITIONS: dict[V, tuple[V, ...]] = {
    V.RUNNING: (V.STARTING, V.REBOOTING),
    V.DESTROYED: LIVE,
    V.FAILED: LIVE,
    V.GONE: LIVE,
}


def buffer_report(ctx: Ctx, k: Val) -> None:
    """Queue a push of VMM k's current state unless a report is already in flight (a VMM
    its sled has lost, or never had, cannot be reported)."""
    st = ctx.at("sa_state", k)
    with ctx.when(ctx.ops.And(ctx.at("rb_state", k) == V.ABSENT, st != V.ABSENT, st != V.GONE)):
        ctx.set_at("rb_state", k, ctx.at("sa_state", k))
        ctx.set_at("rb_gen", k, ctx.at("sa_gen", k))


def fail_side(ctx: Ctx, m: Val, side: str) -> None:
    st = ctx.at(f"sa_m{side}_st", m)
    with ctx.when(ctx.ops.And(m != NONE, ctx.ops.In(st, UNFINISHED))):
        ctx.set_at(f"sa_m{side}_st", m, M.FAILED)
        ctx.set_at(f"sa_m{side}_gen", m, ctx.inc(ctx.at(f"sa_m{side}_gen", m)))


def observe(ctx: Ctx, k: Val, new: Val) -> None:
    """The sled-agent sees VMM k enter `new`: gen + 1, migrations failed on death, push."""
    ops = ctx.ops
    ctx.set_at("sa_state", k, new)
    ctx.set_at("sa_gen", k, ctx.inc(ctx.at("sa_gen", k)))
    with ctx.when(ops.In(new, (V.DESTROYED, V.FAILED))):
        fail_side(ctx, ctx.at("sa_min", k, NONE), "tgt")
        fail_side(ctx, ctx.at("sa_mout", k, NONE), "src")
    with ctx.when(new != V.GONE):
        buffer_report(ctx, k)


def instance_ensure_registered(ctx: Ctx, cfg: Config, k: Val, m_in: Val) -> Val:
    """Register VMM k with its sled (start node ENSURE_REGISTERED, migrate node
    ENSURE_DESTINATION_PROPOLIS). The returned state goes through notify_instance_updated;
    when that fails (a migration row it names is gone) the node fails. Registering again
    returns the current state (idempotent)."""
    ops = ctx.ops
    new = ctx.at("sa_state", k) == V.ABSENT
    with ctx.when(new):
        ctx.set_at("sa_state", k, ops.If(m_in != NONE, int(V.MIGRATING), int(V.STARTING)))
        # rfd486 creates the row Creating, and the sled's Starting is an observation (gen + 1);
        # the baseline creates it Starting, and the sled answers the state it was given
        gen = ctx.at("v_gen", k)
        ctx.set_at("sa_gen", k, ctx.inc(gen) if cfg.rfd486 else gen)
        ctx.set_at("sa_min", k, m_in)
        with ctx.when(m_in != NONE):
            ctx.set_at("sa_mtgt_st", m_in, M.PENDING)
            ctx.set_at("sa_mtgt_gen", m_in, 1)
    ok = ops.And(ctx.at("sa_state", k) != V.GONE, ctx.at("sa_state", k) != V.ABSENT)
    rejected: Val = False
    for j in range(cfg.vmms):  # the returned state goes through notify_instance_updated
        # an answer naming a migration row the database refuses (soft-deleted: Gone) is an
        # error of notify_instance_updated, so the node fails after the sled took effect
        rejected = ops.Or(rejected, ops.And(k == j, report_rejected(ctx, cfg, j)))
        with ctx.when(ops.And(ok, k == j)):
            needed = vmm_and_migration_update_runtime(ctx, cfg, j, ctx[f"sa_state.{j}"],
                                                      ctx[f"sa_gen.{j}"])
            # a re-executed registration can answer that the VMM (or a migration side)
            # ended: notify_instance_updated then starts an update saga (SPEC §4.2 node 8,
            # §4.1 step 3); with no free update-saga slot, instance-updater takes over
            with ctx.when(needed):
                spawn_update_saga(ctx, cfg, required=False)
    return ops.And(ok, ops.Not(rejected))


def instance_ensure_unregistered(ctx: Ctx, k: Val) -> None:
    """Unregister VMM k: the sled tears it down (Destroyed) and reports that."""
    with ctx.when(ctx.ops.In(ctx.at("sa_state", k), LIVE)):
        observe(ctx, k, V.DESTROYED)


def sled_agent_actions(cfg: Config) -> list[Action]:
    acts: list[Action] = []
    for k in range(cfg.vmms):
        for to, sources in TRANSITIONS.items():
            def step(ctx: Ctx, k: int = k, to: V = to, sources: tuple = sources) -> None:
                ctx.require(ctx.ops.In(ctx[f"sa_state.{k}"], sources), "VMM can move there")
                observe(ctx, k, to)

            acts.append(Action("sled-agent.vmm_transition", (("vmm", k), ("to", to.name)),
                               f"sled-agent(vmm{k})", step, "§2.1",
                               frozenset({"sled"})))
        for keep in (0, 1):
            for spawn in (False, True):
                def push(ctx: Ctx, k: int = k, keep: int = keep, spawn: bool = spawn) -> None:
                    ctx.require(ctx[f"rb_state.{k}"] != V.ABSENT, "a report is in flight")
                    notify_instance_updated(ctx, cfg, k, ctx[f"rb_state.{k}"],
                                            ctx[f"rb_gen.{k}"], spawn)
                    if not keep:
                        ctx.set(f"rb_state.{k}", V.ABSENT)
                        ctx.set(f"rb_gen.{k}", 0)

                acts.append(Action("sled-agent.deliver_report",
                                   (("vmm", k), ("keep", keep),
                                    ("update", "started" if spawn else "none")),
                                   f"sled-agent(vmm{k})", push, "§4.1",
                                   frozenset({"sled", "report"})))

    for m in range(cfg.migrations):
        def complete_target(ctx: Ctx, m: int = m) -> None:
            ops = ctx.ops
            ctx.require(ctx[f"sa_mtgt_st.{m}"] == M.IN_PROGRESS, "target migrating")
            ctx.require(ctx[f"sa_msrc_st.{m}"] != M.FAILED, "source not failed")
            k = ctx[f"m_tgt.{m}"]
            ctx.require(ctx.at("sa_state", k) == V.MIGRATING, "target VMM alive")
            ctx.set(f"sa_mtgt_st.{m}", M.COMPLETED)
            ctx.set(f"sa_mtgt_gen.{m}", ctx.inc(ctx[f"sa_mtgt_gen.{m}"]))
            observe(ctx, k, V.RUNNING)
            del ops

        def complete_source(ctx: Ctx, m: int = m) -> None:
            ctx.require(ctx[f"sa_msrc_st.{m}"] == M.IN_PROGRESS, "source migrating")
            ctx.require(ctx[f"sa_mtgt_st.{m}"] != M.FAILED, "target not failed")
            ctx.require(ctx.ops.In(ctx.at("sa_state", ctx[f"m_src.{m}"]), LIVE),
                        "source VMM alive")
            ctx.set(f"sa_msrc_st.{m}", M.COMPLETED)
            ctx.set(f"sa_msrc_gen.{m}", ctx.inc(ctx[f"sa_msrc_gen.{m}"]))
            buffer_report(ctx, ctx[f"m_src.{m}"])

        def fail(ctx: Ctx, m: int = m) -> None:
            ops = ctx.ops
            ctx.require(ops.Or(ctx[f"sa_msrc_st.{m}"] == M.IN_PROGRESS,
                               ctx[f"sa_mtgt_st.{m}"] == M.IN_PROGRESS), "migration running")
            ctx.require(ctx[f"sa_msrc_st.{m}"] != M.COMPLETED, "source not completed")
            ctx.require(ctx[f"sa_mtgt_st.{m}"] != M.COMPLETED, "target not completed")
            fail_side(ctx, m, "src")
            fail_side(ctx, m, "tgt")
            k = ctx[f"m_tgt.{m}"]
            with ctx.when(ops.In(ctx.at("sa_state", k), LIVE)):
                observe(ctx, k, V.DESTROYED)
            buffer_report(ctx, ctx[f"m_src.{m}"])

        for name, fn in (("migration_target_completes", complete_target),
                         ("migration_source_completes", complete_source),
                         ("migration_fails", fail)):
            acts.append(Action(f"sled-agent.{name}", (("migration", m),),
                               f"sled-agent(mig{m})", fn, "§2.1, §2.4",
                               frozenset({"sled", "migration"})))
    return acts
