"""`project_instance_migrate` and the `instance-migrate` saga (SPEC §4.4).

The saga reserves the destination, creates the target VMM and the migration record, sets the
instance's migration ids (`instance_set_migration_ids`, no undo on purpose), registers the
target and asks it to pull the guest from the source. An unwinding migrate saga leaves its ids
in place and marks its target SagaUnwound and its migration Failed/Failed instead.
"""

from __future__ import annotations

from .effective_state import active_vmm_present
from .expr import Ctx, Val
from .saga import Action, Node, SagaDef, lowest_free
from .sled_agent import (
    buffer_report,
    instance_ensure_registered,
    instance_ensure_unregistered,
)
from .state import FWD, IDLE, NONE, Config
from .updater_lock import instance_deleted
from .vmm_records import create_vmm_record, sled_reservation_delete, unwind_vmm_record
from .vocab import MigrationState as M
from .vocab import VmmState as V


def instance_set_migration_ids(ctx: Ctx, src: Val, m: Val, tgt: Val) -> Val:
    """One UPDATE (SPEC §4.4): the source is still the active, Running or Rebooting VMM, and
    either no migration is set, ours already is, or the one set was left by an unwound migrate
    saga. Every match writes the ids and bumps `state_generation`, a re-execution included."""
    ops = ctx.ops
    cur_t, cur_m = ctx["i_target"], ctx["i_mig"]
    left_behind = ops.And(cur_t != NONE, ctx.at("v_state", cur_t) == V.SAGA_UNWOUND,
                          ctx.at("m_src_st", cur_m) == M.FAILED,
                          ctx.at("m_tgt_st", cur_m) == M.FAILED)
    ok = ops.And(
        ops.Not(instance_deleted(ctx)),
        ctx["i_active"] == src,
        ops.Not(ctx.at("v_del", src, True)),
        ops.In(ctx.at("v_state", src), (V.RUNNING, V.REBOOTING)),
        ops.Or(ops.And(cur_m == NONE, cur_t == NONE),
               ops.And(cur_m == m, cur_t == tgt),
               left_behind),
    )
    # a match by (b) (the node re-executed after a crash) still bumps the generation
    with ctx.when(ok):
        ctx.set("i_mig", m)
        ctx.set("i_target", tgt)
        ctx.set("i_gen", ctx.inc(ctx["i_gen"]))
    return ok


def build_migrate_saga(cfg: Config) -> tuple[SagaDef, list[Action]]:
    def f(ctx: Ctx, name: str, s: int) -> Val:
        return ctx[f"mg_{name}.{s}"]

    def reserve(ctx: Ctx, s: int) -> Val:
        """RESERVE_RESOURCES: sled reservation for the destination VMM."""
        ctx.set_at("v_res", f(ctx, "vmm", s), True)
        return True

    def create_vmm(ctx: Ctx, s: int) -> Val:
        """CREATE_VMM_RECORD: the target VMM row."""
        create_vmm_record(ctx, cfg, f(ctx, "vmm", s), migrating=True)
        return True

    def create_migration(ctx: Ctx, s: int) -> Val:
        """CREATE_MIGRATION_RECORD: both sides Pending, both generations 1."""
        m = f(ctx, "mig", s)
        with ctx.when(ctx.at("m_src_st", m) == M.ABSENT):
            ctx.set_at("m_src", m, f(ctx, "src", s))
            ctx.set_at("m_tgt", m, f(ctx, "vmm", s))
            ctx.set_at("m_src_st", m, M.PENDING)
            ctx.set_at("m_tgt_st", m, M.PENDING)
            ctx.set_at("m_src_gen", m, 1)
            ctx.set_at("m_tgt_gen", m, 1)
        return True

    def migration_mark_failed(ctx: Ctx, s: int) -> None:
        """Undo: both sides Failed, each gen + 1, with no condition but time_deleted."""
        m = f(ctx, "mig", s)
        with ctx.when(ctx.ops.And(ctx.ops.Not(ctx.at("m_del", m, True)),
                                  ctx.at("m_src_st", m) != M.ABSENT)):
            ctx.set_at("m_src_st", m, M.FAILED)
            ctx.set_at("m_tgt_st", m, M.FAILED)
            ctx.set_at("m_src_gen", m, ctx.inc(ctx.at("m_src_gen", m)))
            ctx.set_at("m_tgt_gen", m, ctx.inc(ctx.at("m_tgt_gen", m)))

    def set_migration_ids(ctx: Ctx, s: int) -> Val:
        """SET_MIGRATION_IDS: `instance_set_migration_ids`; Conflict when another won."""
        return instance_set_migration_ids(ctx, f(ctx, "src", s), f(ctx, "mig", s),
                                          f(ctx, "vmm", s))

    def clear_migration_ids(ctx: Ctx, s: int) -> None:
        """Only under mutant migrate-unwind-clears-ids: the undo the real saga lacks."""
        with ctx.when(ctx.ops.And(ctx["i_mig"] == f(ctx, "mig", s),
                                  ctx.ops.Not(instance_deleted(ctx)))):
            ctx.set("i_mig", NONE)
            ctx.set("i_target", NONE)
            ctx.set("i_gen", ctx.inc(ctx["i_gen"]))

    def ensure_destination(ctx: Ctx, s: int) -> Val:
        """ENSURE_DESTINATION_PROPOLIS: register the target VMM with the migration id."""
        return instance_ensure_registered(ctx, cfg, f(ctx, "vmm", s), f(ctx, "mig", s))

    def unregister_destination(ctx: Ctx, s: int) -> None:
        instance_ensure_unregistered(ctx, f(ctx, "vmm", s))

    def instance_migrate(ctx: Ctx, s: int) -> Val:
        """INSTANCE_MIGRATE: ask the target to migrate in from the source; both sleds then
        show the migration in progress. No undo: once started it cannot be taken back."""
        ops = ctx.ops
        m, k, src = f(ctx, "mig", s), f(ctx, "vmm", s), f(ctx, "src", s)
        begun = ctx.at("sa_mtgt_st", m) != M.PENDING
        can = ops.And(ctx.at("sa_state", k) == V.MIGRATING,
                      ops.In(ctx.at("sa_state", src), (V.RUNNING, V.REBOOTING)))
        go = ops.And(ops.Not(begun), can)
        with ctx.when(go):
            ctx.set_at("sa_mtgt_st", m, M.IN_PROGRESS)
            ctx.set_at("sa_mtgt_gen", m, ctx.inc(ctx.at("sa_mtgt_gen", m)))
            ctx.set_at("sa_msrc_st", m, M.IN_PROGRESS)
            ctx.set_at("sa_msrc_gen", m, 2)
            ctx.set_at("sa_mout", src, m)
            buffer_report(ctx, k)
            buffer_report(ctx, src)
        return ops.Or(begun, go)

    migrate_unwind_clears = cfg.has("migrate-unwind-clears-ids")
    saga = SagaDef(
        kind="instance-migrate", prefix="mg", slots=cfg.migrate_sagas,
        nodes=[
            Node("RESERVE_RESOURCES", "§4.4 node 2", reserve,
                 lambda ctx, s: sled_reservation_delete(ctx, f(ctx, "vmm", s))),
            Node("CREATE_VMM_RECORD", "§4.4 node 4", create_vmm,
                 lambda ctx, s: unwind_vmm_record(ctx, cfg, f(ctx, "vmm", s))),
            Node("CREATE_MIGRATION_RECORD", "§4.4 node 5", create_migration,
                 migration_mark_failed),
            Node("SET_MIGRATION_IDS", "§4.4 node 6", set_migration_ids,
                 clear_migration_ids if migrate_unwind_clears else None),
            Node("ENSURE_DESTINATION_PROPOLIS", "§4.4 node 7", ensure_destination,
                 unregister_destination, ambiguous=True),
            Node("INSTANCE_MIGRATE", "§4.4 node 8", instance_migrate, ambiguous=True),
        ],
    )

    api: list[Action] = []
    for s in range(cfg.migrate_sagas):
        def migrate(ctx: Ctx, s: int = s) -> None:
            """`project_instance_migrate`: the active VMM is Running and no migration is set."""
            ops = ctx.ops
            ctx.require(ops.Not(instance_deleted(ctx)), "instance exists")
            ctx.require(active_vmm_present(ctx), "an active VMM")
            ctx.require(ctx.at("v_state", ctx["i_active"]) == V.RUNNING, "active VMM Running")
            ctx.require(ctx["i_mig"] == NONE, "no migration in progress")
            ctx.require(lowest_free(ctx, "mg_mode", cfg.migrate_sagas, s, IDLE), "saga slot")
            placed = [lowest_free(ctx, "v_alloc", cfg.vmms, k, False) for k in range(cfg.vmms)]
            for k, here in enumerate(placed):
                with ctx.when(here):
                    ctx.set(f"v_alloc.{k}", True)
                    ctx.set(f"mg_vmm.{s}", k)
            ctx.require(ops.Or(*placed), "a free VMM slot")
            mplaced = [lowest_free(ctx, "m_alloc", cfg.migrations, m, False)
                       for m in range(cfg.migrations)]
            for m, here in enumerate(mplaced):
                with ctx.when(here):
                    ctx.set(f"m_alloc.{m}", True)
                    ctx.set(f"mg_mig.{s}", m)
            ctx.require(ops.Or(*mplaced), "a free migration slot")
            ctx.set(f"mg_src.{s}", ctx["i_active"])
            ctx.set(f"mg_mode.{s}", FWD)
            ctx.set(f"mg_pc.{s}", 0)

        api.append(Action("user.instance_migrate", (("saga", s),), "user", migrate,
                          "§4.4 API precondition", frozenset({"user"})))
    return saga, api
