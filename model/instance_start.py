"""`instance_start` and the `instance-start` saga (SPEC §4.2).

The API check reads the effective state; the saga then reserves a sled, creates the VMM
record, points the instance at it (MARK_AS_STARTING, a compare-and-swap on the instance
generation), configures NAT, registers the VMM with its sled, charges provisioning and asks
the sled to run it. GENERATE_PROPOLIS_ID, ALLOC_PROPOLIS_IP and V2P_ENSURE change nothing the
model tracks: the propolis id is drawn when the saga is created, the other two are omitted.
"""

from __future__ import annotations

from .effective_state import active_vmm_present, effective_state
from .expr import Ctx, Val
from .instance_request_state import mark_instance_failed
from .provisioning import (
    virtual_provisioning_delete_instance,
    virtual_provisioning_insert_instance,
)
from .saga import Action, Node, SagaDef, lowest_free
from .sled_agent import instance_ensure_registered, instance_ensure_unregistered
from .state import FWD, IDLE, NONE, Config
from .updater_lock import instance_deleted
from .vmm_records import create_vmm_record, sled_reservation_delete, unwind_vmm_record
from .vocab import ExternalState as X
from .vocab import InstanceState as I
from .vocab import VmmState as V


def start_allowed(ctx: Ctx, cfg: Config) -> Val:
    """`instance_start_allowed`: only an instance shown Stopped (or, in rfd486, Failed) whose
    active VMM is absent or SagaUnwound gets a saga; other states are a no-op or a 409."""
    ops = ctx.ops
    eff = effective_state(ctx, cfg)
    slot_empty = ops.Or(ops.Not(active_vmm_present(ctx)),
                        ctx.at("v_state", ctx["i_active"]) == V.SAGA_UNWOUND)
    ok_states = (X.STOPPED, X.FAILED) if cfg.rfd486 else (X.STOPPED,)
    return ops.And(ops.In(eff, ok_states), slot_empty)


def build_start_saga(cfg: Config) -> tuple[SagaDef, list[Action]]:
    def vmm(ctx: Ctx, s: int) -> Val:
        return ctx[f"st_vmm.{s}"]

    def alloc_server(ctx: Ctx, s: int) -> Val:
        """ALLOC_SERVER: reserve sled resources under the VMM (propolis) id."""
        ctx.set_at("v_res", vmm(ctx, s), True)
        return True

    def create_vmm(ctx: Ctx, s: int) -> Val:
        """CREATE_VMM_RECORD: insert the VMM row (idempotent)."""
        create_vmm_record(ctx, cfg, vmm(ctx, s), migrating=False)
        return True

    def mark_as_starting(ctx: Ctx, s: int) -> Val:
        """MARK_AS_STARTING: re-read the instance; our VMM already active → done; an active
        VMM that is not SagaUnwound → Conflict; otherwise CAS `state=Vmm, active=ours`."""
        ops = ctx.ops
        k = vmm(ctx, s)
        alive = ops.Not(instance_deleted(ctx))
        mine = ops.And(alive, ctx["i_active"] == k)
        free = ops.Or(ops.Not(active_vmm_present(ctx)),
                      ctx.at("v_state", ctx["i_active"]) == V.SAGA_UNWOUND)
        write = ops.And(alive, ops.Not(mine), free)
        with ctx.when(write):
            ctx.set("i_state", I.VMM)
            ctx.set("i_active", k)
            ctx.set("i_gen", ctx.inc(ctx["i_gen"]))
        with ctx.when(ops.Or(write, mine)):
            ctx.set(f"st_gen.{s}", ctx["i_gen"])
            ctx.set(f"st_lid.{s}", ctx["i_updater"])
            ctx.set(f"st_lgen.{s}", ctx["i_ugen"])
        return ops.Or(write, mine)

    def unmark_as_starting(ctx: Ctx, s: int) -> None:
        """Undo: `state=NoVmm, active=NULL, gen = started gen + 1`, CAS on gen; if the gen
        moved on it does nothing."""
        ops = ctx.ops
        alive = ops.Not(instance_deleted(ctx))
        if cfg.has("start-unwind-clears-unconditionally"):
            cond, gen = alive, ctx.inc(ctx["i_gen"])
        else:
            cond = ops.And(alive, ops.ult(ctx["i_gen"], ctx.inc(ctx[f"st_gen.{s}"])))
            gen = ctx.inc(ctx[f"st_gen.{s}"])
        with ctx.when(cond):
            ctx.set("i_state", I.NO_VMM)
            ctx.set("i_active", NONE)
            ctx.set("i_gen", gen)
            if cfg.has("lock-in-runtime-state"):
                # the pre-#5890 changeset also carried the lock columns read at MARK time
                ctx.set("i_updater", ctx[f"st_lid.{s}"])
                ctx.set("i_ugen", ctx[f"st_lgen.{s}"])

    def dpd_ensure(ctx: Ctx, s: int) -> Val:
        """DPD_ENSURE (and V2P_ENSURE): point the instance's network config at our VMM."""
        ctx.set("i_net", vmm(ctx, s))
        return True

    def dpd_undo(ctx: Ctx, s: int) -> None:
        """`instance_delete_dpd_config`."""
        ctx.set("i_net", NONE)

    def ensure_registered(ctx: Ctx, s: int) -> Val:
        """ENSURE_REGISTERED: register with the sled; the returned state is applied."""
        return instance_ensure_registered(ctx, cfg, vmm(ctx, s), NONE)

    def registration_unhealthy(ctx: Ctx, s: int) -> None:
        """Baseline: `instance_ensure_registered` meets an unhealthy sled (an error other
        than a 4xx) and calls `mark_instance_failed` (§4.10) before the node fails; the sled
        registered nothing. rfd486 marks failed only a VMM its sled reports gone (Δ #6455),
        which registration cannot meet, so there the node just fails."""
        mark_instance_failed(ctx)

    def unregister(ctx: Ctx, s: int) -> None:
        """`instance_ensure_unregistered`."""
        instance_ensure_unregistered(ctx, vmm(ctx, s))

    def unregister_unhealthy(ctx: Ctx, s: int) -> None:
        """The undo's `instance_ensure_unregistered` meets an unhealthy sled (§4.2 node 8):
        the sled unregisters nothing; the baseline calls `mark_instance_failed` (§4.10), and
        the undo fails, so the saga is stuck (opt-in `Config.stuck_undos`). rfd486 marks
        failed only a VMM its sled reports gone (Δ #6455), so there the undo just fails."""
        if not cfg.rfd486:
            mark_instance_failed(ctx)

    def add_virtual_resources(ctx: Ctx, s: int) -> Val:
        """ADD_VIRTUAL_RESOURCES: charge provisioning (keyed by instance id)."""
        virtual_provisioning_insert_instance(ctx)
        return True

    def remove_virtual_resources(ctx: Ctx, s: int) -> None:
        virtual_provisioning_delete_instance(ctx, cfg)

    def ensure_running(ctx: Ctx, s: int) -> Val:
        """ENSURE_RUNNING: `instance_request_state(Run)`; fails if the VMM is no longer alive."""
        return ctx.ops.In(ctx.at("sa_state", vmm(ctx, s)), (V.STARTING, V.RUNNING, V.REBOOTING))

    saga = SagaDef(
        kind="instance-start", prefix="st", slots=cfg.start_sagas,
        nodes=[
            Node("ALLOC_SERVER", "§4.2 node 2", alloc_server,
                 lambda ctx, s: sled_reservation_delete(ctx, vmm(ctx, s))),
            Node("CREATE_VMM_RECORD", "§4.2 node 4", create_vmm,
                 lambda ctx, s: unwind_vmm_record(ctx, cfg, vmm(ctx, s))),
            Node("MARK_AS_STARTING", "§4.2 node 5", mark_as_starting, unmark_as_starting),
            Node("DPD_ENSURE", "§4.2 nodes 6-7", dpd_ensure, dpd_undo),
            Node("ENSURE_REGISTERED", "§4.2 node 8; §4.10", ensure_registered, unregister,
                 ambiguous=True, unhealthy=None if cfg.rfd486 else registration_unhealthy,
                 unhealthy_tags=() if cfg.rfd486 else ("mark_failed",),
                 undo_unhealthy=unregister_unhealthy),
            Node("ADD_VIRTUAL_RESOURCES", "§4.2 node 9", add_virtual_resources,
                 remove_virtual_resources),
            Node("ENSURE_RUNNING", "§4.2 node 10", ensure_running, crashes=False),
        ],
    )

    api: list[Action] = []
    for s in range(cfg.start_sagas):
        for k in range(cfg.vmms):
            def start(ctx: Ctx, s: int = s, k: int = k) -> None:
                ctx.require(ctx.ops.Not(instance_deleted(ctx)), "instance exists")
                ctx.require(start_allowed(ctx, cfg), "instance_start_allowed")
                ctx.require(lowest_free(ctx, "st_mode", cfg.start_sagas, s, IDLE), "saga slot")
                ctx.require(lowest_free(ctx, "v_alloc", cfg.vmms, k, False), "new propolis id")
                ctx.set(f"v_alloc.{k}", True)
                ctx.set(f"st_mode.{s}", FWD)
                ctx.set(f"st_pc.{s}", 0)
                ctx.set(f"st_vmm.{s}", k)

            api.append(Action("user.instance_start", (("saga", s), ("vmm", k)), "user", start,
                              "§4.2 instance_start_allowed", frozenset({"user"})))
    return saga, api
