"""`project_destroy_instance` and the `instance-delete` saga (SPEC §4.5).

No node has an undo. `project_delete_instance` is an atomic detach-many that requires the
instance to be NoVmm or Failed with no active VMM; it neither releases provisioning nor looks
at the lock, the generation or the migration ids (quirk Q3).
"""

from __future__ import annotations

from .effective_state import effective_state
from .expr import Ctx, Val
from .saga import Action, Node, SagaDef
from .state import FWD, IDLE, NONE, Config
from .updater_lock import instance_deleted
from .vocab import ExternalState as X
from .vocab import InstanceState as I


def project_delete_instance(ctx: Ctx, cfg: Config) -> Val:
    ops = ctx.ops
    gone = instance_deleted(ctx)
    ok = ops.And(ops.Not(gone), ops.In(ctx["i_state"], (I.NO_VMM, I.FAILED)),
                 ctx["i_active"] == NONE)
    with ctx.when(ok):
        ctx.set("i_state", I.DESTROYED)
        for m in range(cfg.migrations):  # instance_mark_migrations_deleted
            with ctx.when(ctx[f"m_src_st.{m}"] != 0):
                ctx.set(f"m_del.{m}", True)
    return ops.Or(ok, gone)  # ObjectNotFound counts as success


def build_delete_saga(cfg: Config) -> tuple[SagaDef, list[Action]]:
    def delete_nat(ctx: Ctx, s: int) -> Val:
        """INSTANCE_DELETE_NAT: `instance_delete_dpd_config`."""
        ctx.set("i_net", NONE)
        return True

    def delete_record(ctx: Ctx, s: int) -> Val:
        """INSTANCE_DELETE_RECORD: `project_delete_instance`; 400 if a VMM is still active."""
        return project_delete_instance(ctx, cfg)

    saga = SagaDef(kind="instance-delete", prefix="dl", slots=1, _indexed=False, nodes=[
        Node("INSTANCE_DELETE_NAT", "§4.5 node 1", delete_nat),
        Node("INSTANCE_DELETE_RECORD", "§4.5 node 2", delete_record),
    ])

    def delete(ctx: Ctx) -> None:
        """The API refuses an instance that is not shown Stopped or Failed."""
        ctx.require(ctx.ops.Not(instance_deleted(ctx)), "instance exists")
        ctx.require(ctx.ops.In(effective_state(ctx, cfg), (X.STOPPED, X.FAILED)),
                    "instance stopped or failed")
        ctx.require(ctx["dl_mode"] == IDLE, "saga slot")
        ctx.set("dl_mode", FWD)
        ctx.set("dl_pc", 0)

    return saga, [Action("user.instance_delete", (), "user", delete, "§4.5",
                         frozenset({"user"}))]
