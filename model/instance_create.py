"""The `instance-create` saga, in minimal form (SPEC §4.11).

The model starts right after CREATE_INSTANCE_RECORD (instance Creating, gen 1); the NIC, IP
and disk nodes change nothing the model tracks. MOVE_TO_STOPPED is a CAS to NoVmm at gen 2.
If it fails, the record's undo marks the instance Failed and deletes it.
"""

from __future__ import annotations

from .expr import Ctx, Val
from .saga import Action, Node, SagaDef
from .state import NONE, Config
from .updater_lock import instance_deleted
from .vocab import InstanceState as I


def build_create_saga(cfg: Config) -> tuple[SagaDef, list[Action]]:
    def create_record(ctx: Ctx, s: int) -> Val:
        """CREATE_INSTANCE_RECORD already ran before the model's first state."""
        return True

    def undo_create_record(ctx: Ctx, s: int) -> None:
        """Undo: write Failed with gen + 1, then `project_delete_instance`. With an active
        VMM id the Failed write breaks the CHECK constraint, so the undo cannot finish."""
        alive = ctx.ops.Not(instance_deleted(ctx))
        ctx.require(ctx.ops.Or(ctx.ops.Not(alive), ctx["i_active"] == NONE), "CHECK allows Failed")
        with ctx.when(alive):
            ctx.set("i_gen", ctx.inc(ctx["i_gen"]))
            ctx.set("i_state", I.DESTROYED)

    def move_to_stopped(ctx: Ctx, s: int) -> Val:
        """MOVE_TO_STOPPED: `state=NoVmm`, gen = record gen + 1 (CAS; stale → no-op)."""
        ops = ctx.ops
        with ctx.when(ops.And(ops.Not(instance_deleted(ctx)), ops.ult(ctx["i_gen"], 2))):
            ctx.set("i_state", I.NO_VMM)
            ctx.set("i_gen", 2)
        return True

    saga = SagaDef(kind="instance-create", prefix="cr", slots=1, _indexed=False, nodes=[
        Node("CREATE_INSTANCE_RECORD", "§4.11 node 1", create_record, undo_create_record,
             fails=False, crashes=False),
        Node("MOVE_TO_STOPPED", "§4.11 node 7", move_to_stopped),
    ])
    return saga, []
