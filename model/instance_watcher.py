"""Background task `instance-watcher` (SPEC §4.9): pulls the state of each VMM of a
non-deleted instance from its sled and feeds it through `notify_instance_updated`. In rfd486
a VMM its sled no longer knows (404 NO_SUCH_INSTANCE) gets a made-up `Failed` report at
gen + 1; at the baseline that is only a metric."""

from __future__ import annotations

from .expr import Ctx
from .notify_instance_updated import notify_instance_updated
from .saga import Action
from .state import Config
from .vocab import InstanceState
from .vocab import VmmState as V


def build_instance_watcher(cfg: Config) -> list[Action]:
    acts = []
    for k in range(cfg.vmms):
        for spawn in (False, True):
            def poll(ctx: Ctx, k: int = k, spawn: bool = spawn) -> None:
                ops = ctx.ops
                ctx.require(ops.Not(ctx[f"v_del.{k}"]), "VMM not deleted")
                ctx.require(ctx[f"v_state.{k}"] != V.ABSENT, "VMM row exists")
                ctx.require(ctx["i_state"] != InstanceState.DESTROYED, "instance not deleted")
                if cfg.rfd486:
                    ctx.require(ops.Not(ops.In(ctx[f"v_state.{k}"],
                                               (V.CREATING, V.SAGA_UNWOUND, V.DESTROYED))),
                                "watched state")
                st = ctx[f"sa_state.{k}"]
                ctx.require(ops.And(st != V.ABSENT, st != V.GONE), "sled knows the VMM")
                notify_instance_updated(ctx, cfg, k, st, ctx[f"sa_gen.{k}"], spawn)

            sp = "started" if spawn else "none"
            acts.append(Action("instance-watcher.poll", (("vmm", k), ("update", sp)),
                               "instance-watcher", poll, "§4.9",
                               frozenset({"background", "report"})))
            if cfg.rfd486:
                def gone(ctx: Ctx, k: int = k, spawn: bool = spawn) -> None:
                    ops = ctx.ops
                    ctx.require(ops.Not(ctx[f"v_del.{k}"]), "VMM not deleted")
                    ctx.require(ctx["i_state"] != InstanceState.DESTROYED,
                                "instance not deleted")
                    ctx.require(ops.Not(ops.In(ctx[f"v_state.{k}"],
                                               (V.ABSENT, V.CREATING, V.SAGA_UNWOUND,
                                                V.DESTROYED))), "watched state")
                    ctx.require(ctx[f"sa_state.{k}"] == V.GONE, "sled answers 404")
                    # the made-up report carries no migration sides
                    notify_instance_updated(ctx, cfg, k, int(V.FAILED),
                                            ctx.inc(ctx[f"v_gen.{k}"]), spawn, migrations=False)

                acts.append(Action("instance-watcher.vmm_gone", (("vmm", k), ("update", sp)),
                                   "instance-watcher", gone, "§4.9 (#6455)",
                                   frozenset({"background", "report"})))
    return acts
