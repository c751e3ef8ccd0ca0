"""The update sagas (SPEC §4.6): `start-instance-update` and the real `instance-update`.

`start-instance-update` (the parent) tries the updater lock, reads the instance snapshot while
holding it, and, when `UpdatesRequired` says there is work, starts the real saga (the child)
and waits for it. The child inherits the lock, reconciles network config and provisioning,
commits the new runtime state and releases the lock in one statement, chains a successor when
more work is pending, and only then soft-deletes the VMMs it unlinked.
"""

from __future__ import annotations

from .expr import Ctx, Val
from .provisioning import virtual_provisioning_delete_instance
from .saga import Node, Outcome, SagaDef, lowest_free, reset_slot
from .state import FWD, IDLE, NET_DELETE, NET_NONE, NET_UPDATE, NONE, UNWIND, Config, Layout
from .updater_lock import (
    instance_commit_update,
    instance_deleted,
    instance_updater_inherit_lock,
    instance_updater_lock,
    instance_updater_unlock,
)
from .updates_required import updates_required
from .vmm_records import sled_reservation_delete, vmm_mark_deleted

# parent nodes
LOCK_INSTANCE, FETCH_STATE = 0, 1
CHILD_FIELDS = ("nstate", "ngen", "nact", "ntgt", "nmig", "dact", "dtgt", "deprov", "netop",
                "netk")


def spawn_update_saga(ctx: Ctx, cfg: Config, required: bool = True) -> Val:
    """Create a `start-instance-update` saga in the lowest free parent slot.

    Its first node generates the lock id; the id is recorded in the saga log, so the model
    draws it from `next_uuid` when the saga is created. Returns whether a slot was free; with
    `required`, a full pool disables the action."""
    ops = ctx.ops
    free = [lowest_free(ctx, "up_mode", cfg.update_parents, j, IDLE)
            for j in range(cfg.update_parents)]
    if required:
        ctx.require(ops.Or(*free), "a free update-saga slot")
    for j, here in enumerate(free):
        with ctx.when(here):
            ctx.set(f"up_mode.{j}", FWD)
            ctx.set(f"up_pc.{j}", FETCH_STATE if cfg.has("no-updater-lock") else LOCK_INSTANCE)
            ctx.set(f"up_lid.{j}", ctx["next_uuid"])
            ctx.set("next_uuid", ctx.inc(ctx["next_uuid"]))
            ctx.set(f"up_child.{j}", NONE)
    return ops.Or(*free)


def build_update_sagas(cfg: Config, layout: Layout) -> tuple[SagaDef, SagaDef]:
    no_lock = cfg.has("no-updater-lock")

    # ---------------------------------------------------------------- parent
    def lock_instance(ctx: Ctx, p: int) -> Val:
        """LOCK_INSTANCE: `instance_updater_lock(L)`. AlreadyLocked is Ok(None), not a failure;
        a query error (the instance is deleted) fails the node."""
        ok, locked, gen = instance_updater_lock(ctx, ctx[f"up_lid.{p}"])
        ctx.set(f"up_locked.{p}", locked)
        ctx.set(f"up_lgen.{p}", ctx.ops.If(locked, gen, 0))
        return ok

    def unwind_instance_lock(ctx: Ctx, p: int) -> None:
        """Undo of LOCK_INSTANCE: release the parent's lock, retried until it completes."""
        with ctx.when(ctx[f"up_locked.{p}"]):
            done = instance_updater_unlock(ctx, cfg, ctx[f"up_lid.{p}"], ctx[f"up_lgen.{p}"])
            ctx.require(done, "unlock completes")

    def fetch_state_and_start_real_saga(ctx: Ctx, p: int) -> Val:
        """FETCH_STATE_AND_START_REAL_SAGA: without the lock, finish; with it, snapshot the
        instance, compute UpdatesRequired, then unlock (nothing to do) or start the child and
        wait for it. If no child can be created the node fails and the parent unwinds. If
        UpdatesRequired panics (step C finds no target VMM row), Nexus aborts: the node
        never completes and the lock stays held (SPEC §4.6; invariant
        update_saga_never_panics)."""
        ops = ctx.ops
        locked: Val = True if no_lock else ctx[f"up_locked.{p}"]
        alive = ops.Not(instance_deleted(ctx))
        u = updates_required(ctx, cfg)
        work = ops.And(locked, alive, ops.Not(u.panic), u.required)
        with ctx.when(ops.And(locked, alive, ops.Not(u.required))):
            if not no_lock:
                instance_updater_unlock(ctx, cfg, ctx[f"up_lid.{p}"], ctx[f"up_lgen.{p}"])
        started: Val = False
        slots = [ops.And(work, lowest_free(ctx, "uc_mode", cfg.update_children, c, IDLE))
                 for c in range(cfg.update_children)]
        for c, here in enumerate(slots):
            started = ops.Or(started, here)
            with ctx.when(here):
                ctx.set(f"uc_mode.{c}", FWD)
                ctx.set(f"uc_parent.{c}", p)
                ctx.set(f"uc_lid.{c}", ctx["next_uuid"])
                ctx.set("next_uuid", ctx.inc(ctx["next_uuid"]))
                ctx.set(f"uc_plid.{c}", ctx[f"up_lid.{p}"])
                ctx.set(f"uc_plgen.{c}", ctx[f"up_lgen.{p}"])
                vals = {"nstate": u.new["i_state"], "ngen": u.new["i_gen"],
                        "nact": u.new["i_active"], "ntgt": u.new["i_target"],
                        "nmig": u.new["i_mig"], "dact": u.destroy_active,
                        "dtgt": u.destroy_target, "deprov": u.deprovision, "netop": u.netop,
                        "netk": u.netk}
                for f in CHILD_FIELDS:
                    ctx.set(f"uc_{f}.{c}", vals[f])
                # ghost variable (no omicron counterpart): was this snapshot read while the
                # parent's token was the lock actually held? Invariant snapshot_read_under_lock.
                ctx.set(f"uc_fresh.{c}", ops.And(ctx["i_updater"] == ctx[f"up_lid.{p}"],
                                                 ctx["i_ugen"] == ctx[f"up_lgen.{p}"],
                                                 ctx["i_updater"] != 0))
                start_child(ctx, c)
                ctx.set(f"up_child.{p}", c)
        # success without a child: not locked, or nothing to do; a started child holds the node
        finished = ops.Or(ops.Not(locked), ops.And(alive, ops.Not(u.required)))
        # step C panics (no target VMM row): Nexus aborts, and every recovery re-executes this
        # node and panics again, so the saga never leaves it while still holding the lock
        return ops.Or(finished, started), started, ops.And(locked, alive, u.panic)

    parent = SagaDef(
        kind="start-instance-update", prefix="up", slots=cfg.update_parents,
        nodes=[
            Node("LOCK_INSTANCE", "§4.6 start-instance-update node 2; §5 acquire",
                 lock_instance, unwind_instance_lock,
                 present=(lambda ctx, p: False) if no_lock else None),
            Node("FETCH_STATE_AND_START_REAL_SAGA", "§4.6 start-instance-update node 3",
                 fetch_state_and_start_real_saga, crashes=False,
                 ready=lambda ctx, p: ctx[f"up_child.{p}"] == NONE),
        ],
    )

    # ---------------------------------------------------------------- child
    def become_updater(ctx: Ctx, c: int) -> Val:
        """BECOME_UPDATER: inherit the parent's lock under the child's own id."""
        ok, gen = instance_updater_inherit_lock(ctx, ctx[f"uc_plid.{c}"], ctx[f"uc_plgen.{c}"],
                                                ctx[f"uc_lid.{c}"])
        with ctx.when(ok):
            ctx.set(f"uc_lgen.{c}", gen)
        return ok

    def siu_unbecome_updater(ctx: Ctx, c: int) -> None:
        """Undo of BECOME_UPDATER: release the child's lock (retried until it completes),
        then activate instance-updater."""
        done = instance_updater_unlock(ctx, cfg, ctx[f"uc_lid.{c}"], ctx[f"uc_lgen.{c}"])
        ctx.require(done, "unlock completes")

    def reconcile_resources(ctx: Ctx, c: int) -> Val:
        """UPDATE_NETWORK_CONFIG, RELEASE_VIRTUAL_PROVISIONING and UNASSIGN_OXIMETER_PRODUCER:
        three consecutive idempotent nodes without undo, taken as one step (docs/decisions.md)."""
        op = ctx[f"uc_netop.{c}"]
        with ctx.when(op == NET_DELETE):
            ctx.set("i_net", NONE)
        with ctx.when(op == NET_UPDATE):
            ctx.set("i_net", ctx[f"uc_netk.{c}"])
        with ctx.when(ctx[f"uc_deprov.{c}"]):
            virtual_provisioning_delete_instance(ctx, cfg)
        return True

    def commit_instance_updates(ctx: Ctx, c: int) -> Val:
        """COMMIT_INSTANCE_UPDATES: write the new runtime and release the lock atomically,
        then chain: re-read the instance and start a successor saga if more work is needed."""
        ops = ctx.ops
        new = {"i_state": ctx[f"uc_nstate.{c}"], "i_gen": ctx[f"uc_ngen.{c}"],
               "i_active": ctx[f"uc_nact.{c}"], "i_target": ctx[f"uc_ntgt.{c}"],
               "i_mig": ctx[f"uc_nmig.{c}"]}
        ok = instance_commit_update(ctx, cfg, ctx[f"uc_lid.{c}"], ctx[f"uc_lgen.{c}"], new)
        u = updates_required(ctx, cfg)
        alive = ops.Not(instance_deleted(ctx))
        with ctx.when(ops.And(ok, u.required, alive, ops.Not(u.panic))):
            spawn_update_saga(ctx, cfg, required=False)  # no free slot: instance-updater
        # chaining runs UpdatesRequired on the committed state; if that panics, Nexus aborts
        # after the commit landed and only the crash outcome is possible
        return ok, False, ops.And(ok, alive, u.required, u.panic)

    def destroy_vmm(which: str):  # noqa: ANN202
        def run(ctx: Ctx, c: int) -> Val:
            """destroy-vmm subsaga: RELEASE_SLED_RESOURCES then MARK_VMM_DELETED."""
            k = ctx[f"uc_{which}.{c}"]
            sled_reservation_delete(ctx, k)
            vmm_mark_deleted(ctx, cfg, k)
            return True
        return run

    commit = Node("COMMIT_INSTANCE_UPDATES", "§4.6 instance-update node 6; §5 commit",
                  commit_instance_updates)
    destroys = [
        Node("DESTROY_ACTIVE_VMM", "§4.6 instance-update node 7 (destroy-vmm subsaga)",
             destroy_vmm("dact"), present=lambda ctx, c: ctx[f"uc_dact.{c}"] != NONE),
        Node("DESTROY_TARGET_VMM", "§4.6 instance-update node 8 (destroy-vmm subsaga)",
             destroy_vmm("dtgt"), present=lambda ctx, c: ctx[f"uc_dtgt.{c}"] != NONE),
    ]
    nodes = [
        Node("BECOME_UPDATER", "§4.6 instance-update node 2; §5 inherit", become_updater,
             siu_unbecome_updater, present=(lambda ctx, c: False) if no_lock else None),
        Node("RECONCILE_RESOURCES", "§4.6 instance-update nodes 3-5", reconcile_resources,
             present=lambda ctx, c: ctx.ops.Or(ctx[f"uc_netop.{c}"] != NET_NONE,
                                               ctx[f"uc_deprov.{c}"])),
    ]
    if cfg.has("delete-vmm-before-commit"):
        nodes += destroys + [commit]
    else:
        nodes += [commit] + destroys

    def start_child(ctx: Ctx, c: int) -> None:
        ops = ctx.ops
        remaining: Val = True
        for j, node in enumerate(nodes):
            pj = True if node.present is None else node.present(ctx, c)
            with ctx.when(ops.And(remaining, pj)):
                ctx.set(f"uc_pc.{c}", j)
            remaining = ops.And(remaining, ops.Not(pj))

    def child_finished(ctx: Ctx, c: int, outcome: Outcome) -> None:
        """Tell a parent that waits for this child how it ended (SPEC §4.6 node 3)."""
        ops = ctx.ops
        p_ref = ctx[f"uc_parent.{c}"]
        parent_ok = outcome.status == "done" or (
            outcome.failed_node == 0 and not no_lock and not outcome.injected)
        for p in range(cfg.update_parents):
            waiting = ops.And(p_ref == p, ctx[f"up_mode.{p}"] == FWD,
                              ctx[f"up_pc.{p}"] == FETCH_STATE, ctx[f"up_child.{p}"] == c)
            with ctx.when(waiting):
                if parent_ok or no_lock:
                    reset_slot(ctx, layout, "up", p)
                else:
                    ctx.set(f"up_mode.{p}", UNWIND)
                    ctx.set(f"up_pc.{p}", LOCK_INSTANCE)
                    ctx.set(f"up_child.{p}", NONE)

    child = SagaDef(kind="instance-update", prefix="uc", slots=cfg.update_children,
                    nodes=nodes, on_finish=child_finished)
    return parent, child


def nexus_crash_actions(cfg: Config) -> list:
    """A Nexus replica crashes and restarts: every parent saga it owns that was waiting for its
    child forgets the child; recovery re-executes FETCH_STATE_AND_START_REAL_SAGA (R6)."""
    from .saga import Action

    acts = []
    for n in range(cfg.nexus_replicas):
        owned = [p for p in range(cfg.update_parents) if p % cfg.nexus_replicas == n]

        def crash(ctx: Ctx, owned: list[int] = owned) -> None:
            ops = ctx.ops
            waiting = [ops.And(ctx[f"up_mode.{p}"] == FWD, ctx[f"up_child.{p}"] != NONE)
                       for p in owned]
            ctx.require(ops.Or(*waiting), "a saga of this Nexus is waiting for a child")
            for p, w in zip(owned, waiting, strict=True):
                with ctx.when(w):
                    ctx.set(f"up_child.{p}", NONE)

        acts.append(Action("nexus.crash_and_recover", (("nexus", n),), f"nexus#{n}", crash,
                           "Saga semantics; §5 crash cases; R6", frozenset({"nexus"})))
    return acts
