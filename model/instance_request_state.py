"""Stop and reboot (SPEC §4.3): no saga, just a request to the VMM's sled.

`select_runtime_change_action` allows Stop and Reboot while a VMM is present and the
instance is not Failed, Destroyed or Repairing. The sled's answer goes through
`notify_instance_updated`, which starts an update saga when the answer needs one (a migration
side in it ended); `update=none` is the answer applied without one (none needed, or Nexus
died first). An unhealthy sled makes the baseline call `mark_instance_failed` (§4.10); in
rfd486 only a 404 for a vanished VMM, to stop or reboot alike, marks the *VMM* Failed
(`mark_vmm_failed`) and runs an update saga.
"""

from __future__ import annotations

from .effective_state import active_vmm_present, effective_state
from .expr import Ctx
from .instance_update import spawn_update_saga
from .notify_instance_updated import notify_instance_updated
from .saga import Action
from .sled_agent import observe
from .state import NONE, Config
from .updater_lock import instance_deleted
from .vocab import ExternalState as X
from .vocab import InstanceState as I
from .vocab import VmmState as V

ALLOWED = (X.CREATING, X.STARTING, X.RUNNING, X.STOPPING, X.STOPPED, X.REBOOTING,
           X.MIGRATING)


def mark_instance_failed(ctx: Ctx) -> None:
    """Baseline: `state=Failed, active=NULL, gen+1` (CAS on the gen just read); keeps the
    migration ids, releases nothing and leaves the VMM alone (#4226)."""
    with ctx.when(ctx.ops.Not(instance_deleted(ctx))):
        ctx.set("i_state", I.FAILED)
        ctx.set("i_active", NONE)
        ctx.set("i_gen", ctx.inc(ctx["i_gen"]))


def mark_vmm_failed(ctx: Ctx, k: int) -> None:
    """rfd486 (#6455): write the VMM Failed at gen + 1 (`vmm_update_runtime`)."""
    with ctx.when(ctx.ops.And(ctx.ops.Not(ctx[f"v_del.{k}"]),
                              ctx[f"v_state.{k}"] != V.ABSENT)):
        ctx.set(f"v_state.{k}", V.FAILED)
        ctx.set(f"v_gen.{k}", ctx.inc(ctx[f"v_gen.{k}"]))


def build_request_state(cfg: Config) -> list[Action]:
    acts: list[Action] = []
    for k in range(cfg.vmms):
        for op, froms, to in (("stop", (V.STARTING, V.RUNNING, V.REBOOTING), V.STOPPING),
                              ("reboot", (V.RUNNING,), V.REBOOTING)):
            def precond(ctx: Ctx, k: int = k) -> None:
                ctx.require(ctx.ops.Not(instance_deleted(ctx)), "instance exists")
                ctx.require(ctx["i_active"] == k, "this is the active VMM")
                ctx.require(active_vmm_present(ctx), "a VMM is present")
                ctx.require(ctx.ops.In(effective_state(ctx, cfg), ALLOWED), "state allows it")

            for spawn in (False, True):
                def request(ctx: Ctx, k: int = k, froms: tuple = froms, to: V = to,
                            spawn: bool = spawn) -> None:
                    precond(ctx, k)
                    ctx.require(ctx.ops.In(ctx[f"sa_state.{k}"], froms), "sled accepts")
                    observe(ctx, k, to)
                    # step 3: the answer goes through notify_instance_updated, which starts
                    # an update saga when it needs one (a migration side in it ended)
                    notify_instance_updated(ctx, cfg, k, ctx[f"sa_state.{k}"],
                                            ctx[f"sa_gen.{k}"], spawn)

                acts.append(Action(f"user.instance_{op}",
                                   (("vmm", k), ("sled", "ok"),
                                    ("update", "started" if spawn else "none")),
                                   "user", request, "§4.3 step 3; §4.1", frozenset({"user"})))
            if not cfg.rfd486:
                def unhealthy(ctx: Ctx, k: int = k) -> None:
                    precond(ctx, k)
                    mark_instance_failed(ctx)

                acts.append(Action(f"user.instance_{op}", (("vmm", k), ("sled", "unhealthy")),
                                   "user", unhealthy, "§4.3 step 4; §4.10",
                                   frozenset({"user", "mark_failed"})))
            else:  # rfd486: a 404 to stop or reboot marks the VMM Failed (Δ #6455)
                def gone(ctx: Ctx, k: int = k) -> None:
                    precond(ctx, k)
                    ctx.require(ctx[f"sa_state.{k}"] == V.GONE, "sled answers 404")
                    mark_vmm_failed(ctx, k)
                    spawn_update_saga(ctx, cfg)

                acts.append(Action(f"user.instance_{op}", (("vmm", k), ("sled", "gone")),
                                   "user", gone, "§4.3 step 4; §4.10 mark_vmm_failed",
                                   frozenset({"user", "mark_failed"})))
    return acts
