"""Background task `abandoned-vmm-reaper` (SPEC §4.8): deletes the sled reservation of, and
soft-deletes, every destroyable VMM that its instance no longer references."""

from __future__ import annotations

from .expr import Ctx
from .saga import Action
from .state import Config
from .vmm_records import sled_reservation_delete, vmm_mark_deleted
from .vocab import destroyable_states, mark_deleted_states


def build_reaper(cfg: Config) -> list[Action]:
    acts = []
    for k in range(cfg.vmms):
        def reap(ctx: Ctx, k: int = k) -> None:
            ops = ctx.ops
            ctx.require(ops.In(ctx[f"v_state.{k}"], destroyable_states(cfg.revision)),
                        "destroyable")
            ctx.require(ops.Not(ctx[f"v_del.{k}"]), "not deleted")
            ctx.require(ops.And(ctx["i_active"] != k, ctx["i_target"] != k), "unreferenced")
            # G3: at the baseline a SagaUnwound VMM is listed again and again; only a visit
            # that changes something is a step of the model
            ctx.require(ops.Or(ctx[f"v_res.{k}"],
                               ops.In(ctx[f"v_state.{k}"], mark_deleted_states(cfg.revision))),
                        "work to do")
            sled_reservation_delete(ctx, k)
            vmm_mark_deleted(ctx, cfg, k)

        acts.append(Action("abandoned-vmm-reaper.reap", (("vmm", k),), "abandoned-vmm-reaper",
                           reap, "§4.8", frozenset({"background"})))
    return acts
