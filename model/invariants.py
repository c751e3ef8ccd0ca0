"""The properties the checker proves or refutes, each with an id, one plain sentence and the
SPEC section it comes from.

Three kinds:

* `state`: a predicate on one reachable state;
* `step`: a predicate on one transition (state before, state after, action taken);
* `replay`: a predicate on one state about re-executing a saga node after a crash
  (SPEC §6 item 25): running the node again after its effect already landed changes no
  database record further.

Each function is written once against `Ctx` views, like the actions, so the same code is
evaluated on concrete states (explorer, trace replay) and on Z3 terms (bounded checking).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .actions import Model
from .effective_state import active_vmm_present, effective_state
from .expr import Ctx, Disabled, Val
from .instance_update import FETCH_STATE
from .instance_updater import sweep_matches
from .saga import Action
from .sled_agent import LIVE
from .state import FWD, IDLE, NONE, STUCK, UNWIND, Config
from .updater_lock import instance_deleted
from .updates_required import updates_required
from .vocab import MIGRATION_TERMINAL
from .vocab import ExternalState as X
from .vocab import InstanceState as I
from .vocab import MigrationState as M
from .vocab import VmmState as V


class ActView:
    """Which action a step took: a concrete index or a symbolic one."""

    def __init__(self, model: Model, index: Any, ops: Any) -> None:
        self.model, self.index, self.ops = model, index, ops
        self._cache: dict[Callable[[Action], bool], Val] = {}

    def where(self, pred: Callable[[Action], bool]) -> Val:
        ids = [i for i, a in enumerate(self.model.actions) if pred(a)]
        if not self.ops.symbolic:
            return self.index in ids
        return self.ops.Or(*[self.index == i for i in ids])

    def by_saga(self, kind: str, slot: int) -> Val:
        """Any node or undo action of saga `kind` in slot `slot`."""
        def pred(a: Action) -> bool:
            return a.name.startswith(kind + ".") and a.arg("saga") == slot

        return self.where(pred)

    def named(self, *names: str, **args: int | str) -> Val:
        def pred(a: Action) -> bool:
            return a.name in names and all(a.arg(k) == v for k, v in args.items())

        return self.where(pred)


@dataclass(frozen=True)
class Invariant:
    id: str
    sentence: str
    spec: str
    kind: str  # "state" | "step" | "replay"
    fn: Callable[..., Val]
    source: str = "SPEC §6"


REGISTRY: list[Invariant] = []


def _inv(id: str, sentence: str, spec: str, kind: str = "state",
         source: str = "SPEC §6") -> Callable[[Callable[..., Val]], Callable[..., Val]]:
    def deco(fn: Callable[..., Val]) -> Callable[..., Val]:
        REGISTRY.append(Invariant(id, sentence, spec, kind, fn, source))
        return fn

    return deco


# ------------------------------------------------------------------------------ helpers
COMMIT = "instance-update.COMMIT_INSTANCE_UPDATES"
MARK = "instance-start.MARK_AS_STARTING"
SET_IDS = "instance-migrate.SET_MIGRATION_IDS"
REPORT_PATH = {
    "sled-agent.deliver_report", "instance-watcher.poll", "instance-watcher.vmm_gone",
    "instance-start.ENSURE_REGISTERED", "instance-migrate.ENSURE_DESTINATION_PROPOLIS",
    "user.instance_stop", "user.instance_reboot",
}
UPDATE_SAGAS = ("instance-update", "start-instance-update")
DEAD = (V.DESTROYED, V.FAILED)


def present(s: Ctx, k: Val) -> Val:
    return s.ops.And(k != NONE, s.at("v_state", k) != V.ABSENT, s.ops.Not(s.at("v_del", k, True)))


def child_range(model: Model) -> tuple[int, int]:
    """Node indices between BECOME_UPDATER and COMMIT: a child there holds the lock."""
    names = [n.name for n in model.sagas[5].nodes]
    return names.index("RECONCILE_RESOURCES"), names.index("COMMIT_INSTANCE_UPDATES")


def child_in_cs(s: Ctx, model: Model, c: int) -> Val:
    lo, hi = child_range(model)
    pc = s[f"uc_pc.{c}"]
    committed = s.ops.And(pc == hi, s[f"uc_rp.{c}"])  # the commit ran, then a crash
    return s.ops.And(s[f"uc_mode.{c}"] == FWD, s.ops.Not(s.ops.ult(pc, lo)),
                     s.ops.Not(s.ops.ult(hi, pc)), s.ops.Not(committed))


def update_saga_in_flight(s: Ctx, cfg: Config) -> Val:
    ops = s.ops
    return ops.Or(*[s[f"up_mode.{p}"] != IDLE for p in range(cfg.update_parents)],
                  *[s[f"uc_mode.{c}"] != IDLE for c in range(cfg.update_children)])


def start_saga_owes_charge(s: Ctx, cfg: Config, k: Val) -> Val:
    """A start saga for VMM k has not charged yet, or is unwinding (and will release)."""
    ops = s.ops
    charge = 5  # ADD_VIRTUAL_RESOURCES
    return ops.Or(*[ops.And(s[f"st_vmm.{t}"] == k,
                            ops.Or(ops.And(s[f"st_mode.{t}"] == FWD,
                                           ops.ult(s[f"st_pc.{t}"], charge + 1)),
                                   s[f"st_mode.{t}"] == UNWIND))
                    for t in range(cfg.start_sagas)])


def saga_unwinding_owner(s: Ctx, cfg: Config, k: Val) -> Val:
    ops = s.ops
    return ops.Or(*[ops.And(s[f"st_vmm.{t}"] == k, s[f"st_mode.{t}"] == UNWIND)
                    for t in range(cfg.start_sagas)],
                  *[ops.And(s[f"mg_vmm.{t}"] == k, s[f"mg_mode.{t}"] == UNWIND)
                    for t in range(cfg.migrate_sagas)])


def acting_child(act: ActView, name: str, c: int) -> Val:
    return act.named(name, saga=c)


# ------------------------------------------------------------------------ SPEC §6, 1-26
@_inv("state_vmm_iff_active", "The instance is in state Vmm exactly when it has an active "
      "VMM id.", "§6.1, CHECK vmm_iff_active_propolis")
def _i1(s: Ctx, cfg: Config, model: Model) -> Val:
    return (s["i_state"] == I.VMM) == (s["i_active"] != NONE)


@_inv("target_implies_migration", "A target VMM id comes with a migration id, and a "
      "migration id only with state Vmm.", "§6.2")
def _i2(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    return ops.And(ops.Implies(s["i_target"] != NONE, s["i_mig"] != NONE),
                   ops.Implies(s["i_mig"] != NONE, s["i_state"] == I.VMM))


@_inv("only_start_sets_active", "Only a start saga points the instance at a new VMM, and only "
      "over an empty or SagaUnwound slot; the update saga may only move it to the target.",
      "§6.3", "step")
def _i3(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    changed = ops.And(post["i_active"] != NONE, post["i_active"] != pre["i_active"])
    by_start = ops.And(act.named(MARK), ops.Or(ops.Not(present(pre, pre["i_active"])),
                                               pre.at("v_state", pre["i_active"])
                                               == V.SAGA_UNWOUND))
    by_update = ops.And(act.named(COMMIT), post["i_active"] == pre["i_target"])
    return ops.Implies(changed, ops.Or(by_start, by_update))


def _left_behind(s: Ctx) -> Val:
    ops = s.ops
    t, m = s["i_target"], s["i_mig"]
    return ops.And(t != NONE, s.at("v_state", t) == V.SAGA_UNWOUND,
                   s.at("m_src_st", m) == M.FAILED, s.at("m_tgt_st", m) == M.FAILED)


@_inv("only_migrate_sets_ids", "Only a migrate saga sets the migration and target ids, and "
      "only over empty ids or ids an unwound migrate saga left behind.", "§6.4", "step")
def _i4(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    changed = ops.Or(ops.And(post["i_mig"] != NONE, post["i_mig"] != pre["i_mig"]),
                     ops.And(post["i_target"] != NONE, post["i_target"] != pre["i_target"]))
    allowed = ops.And(act.named(SET_IDS), ops.Or(
        ops.And(pre["i_mig"] == NONE, pre["i_target"] == NONE), _left_behind(pre)))
    return ops.Implies(changed, allowed)


@_inv("only_update_clears_ids", "Only an update saga's commit clears the migration or target "
      "id; the active id is also cleared by a start saga's own undo (and, at the baseline, by "
      "mark_instance_failed).", "§6.5", "step")
def _i5(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    ids = ops.Or(ops.And(pre["i_mig"] != NONE, post["i_mig"] == NONE),
                 ops.And(pre["i_target"] != NONE, post["i_target"] == NONE))
    active = ops.And(pre["i_active"] != NONE, post["i_active"] == NONE)
    active_ok = ops.Or(act.named(COMMIT), act.named(f"{MARK}.undo"),
                       act.where(lambda a: "mark_failed" in a.tags))
    return ops.And(ops.Implies(ids, act.named(COMMIT)), ops.Implies(active, active_ok))


@_inv("only_update_unlinks_dead_active", "A VMM that is gone (Destroyed, or Failed in rfd486) "
      "is unlinked from the instance only by an update saga, or by the start saga that linked "
      "it undoing its own MARK_AS_STARTING (the exception §6.5 names).", "§6.6", "step")
def _i6(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    a = pre["i_active"]
    dead = ops.And(present(pre, a), ops.In(pre.at("v_state", a),
                                           DEAD if cfg.rfd486 else (V.DESTROYED,)))
    own_undo = ops.Or(*[ops.And(act.named(f"{MARK}.undo", saga=t), pre[f"st_vmm.{t}"] == a)
                        for t in range(cfg.start_sagas)])
    return ops.Implies(ops.And(dead, post["i_active"] != a), ops.Or(act.named(COMMIT), own_undo))


@_inv("unwinding_sagas_clear_only_their_own", "An unwinding start saga clears only its own VMM "
      "at its own generation, and an unwinding migrate saga never clears ids.", "§6.7", "step")
def _i7(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    conds = []
    for t in range(cfg.start_sagas):
        moved = ops.And(act.named(f"{MARK}.undo", saga=t),
                        ops.Or(post["i_active"] != pre["i_active"],
                               post["i_gen"] != pre["i_gen"]))
        conds.append(ops.Implies(moved, ops.And(pre["i_active"] == pre[f"st_vmm.{t}"],
                                                pre["i_gen"] == pre[f"st_gen.{t}"])))
    mig_undo = act.where(lambda a: a.name.startswith("instance-migrate.") and "undo" in a.tags)
    conds.append(ops.Implies(mig_undo, ops.And(post["i_mig"] == pre["i_mig"],
                                               post["i_target"] == pre["i_target"])))
    return ops.And(*conds)


@_inv("at_most_one_updater", "At most one update saga is inside its critical section "
      "(between inheriting the lock and committing).", "§6.8")
def _i8(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    cs = [child_in_cs(s, model, c) for c in range(cfg.update_children)]
    pairs = [ops.And(cs[a], cs[b]) for a in range(len(cs)) for b in range(a + 1, len(cs))]
    return ops.Not(ops.Or(*pairs))


@_inv("snapshot_read_under_lock", "An update saga acts only on a snapshot that was read while "
      "its parent held the lock.", "§6.9")
def _i9(s: Ctx, cfg: Config, model: Model) -> Val:
    # uc_fresh is a ghost variable set when the child is created (see instance_update.py)
    ops = s.ops
    return ops.And(*[ops.Implies(child_in_cs(s, model, c), s[f"uc_fresh.{c}"])
                     for c in range(cfg.update_children)])


@_inv("commit_only_if_unchanged", "An update commit writes only if the instance generation is "
      "still the snapshot's and the committer still holds the lock.", "§6.10", "step")
def _i10(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    conds = []
    wrote = ops.Or(*[post[f] != pre[f] for f in ("i_state", "i_gen", "i_active", "i_target",
                                                  "i_mig")])
    for c in range(cfg.update_children):
        ok = ops.And(pre["i_gen"] + 1 == pre[f"uc_ngen.{c}"],
                     pre["i_updater"] == pre[f"uc_lid.{c}"],
                     pre["i_ugen"] == pre[f"uc_lgen.{c}"])
        conds.append(ops.Implies(ops.And(acting_child(act, COMMIT, c), wrote), ok))
    return ops.And(*conds)


@_inv("no_leaked_lock", "A held updater lock always belongs to an update saga that is still "
      "running and will release it.", "§6.11")
def _i11(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    owner = ops.Or(*[ops.And(s[f"up_mode.{p}"] != IDLE, s[f"up_lid.{p}"] == s["i_updater"])
                     for p in range(cfg.update_parents)],
                   *[ops.And(s[f"uc_mode.{c}"] != IDLE, s[f"uc_lid.{c}"] == s["i_updater"])
                     for c in range(cfg.update_children)])
    return ops.Implies(ops.And(s["i_updater"] != 0, ops.Not(instance_deleted(s))), owner)


def _lock_holder_acts(pre: Ctx, act: ActView, cfg: Config) -> Val:
    """The action is taken by the update saga whose token is the lock currently held."""
    ops = pre.ops
    mine = []
    for p in range(cfg.update_parents):
        tok = ops.And(pre["i_updater"] == pre[f"up_lid.{p}"],
                      pre["i_ugen"] == pre[f"up_lgen.{p}"])
        mine.append(ops.And(act.by_saga("start-instance-update", p), tok))
    for c in range(cfg.update_children):
        tok = ops.And(pre["i_updater"] == pre[f"uc_lid.{c}"],
                      pre["i_ugen"] == pre[f"uc_lgen.{c}"])
        parent_tok = ops.And(pre["i_updater"] == pre[f"uc_plid.{c}"],
                             pre["i_ugen"] == pre[f"uc_plgen.{c}"])
        mine.append(ops.And(act.by_saga("instance-update", c), tok))
        mine.append(ops.And(act.named("instance-update.BECOME_UPDATER", saga=c), parent_tok))
    return ops.Or(*mine)


@_inv("updater_lock_not_stolen", "A held lock is released or handed on only by the saga that "
      "holds it, with its own token (UpdaterLockNotStolen).", "§6.12; §5 release",
      "step", source="SPEC §6 + PlusCal")
def _i12(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    moved = ops.And(pre["i_updater"] != 0,
                    ops.Or(post["i_updater"] != pre["i_updater"],
                           post["i_ugen"] != pre["i_ugen"]),
                    ops.Not(instance_deleted(post)))
    return ops.Implies(moved, _lock_holder_acts(pre, act, cfg))


@_inv("update_never_drives_sleds", "An update saga never starts, stops or migrates a VMM: it "
      "changes nothing a sled-agent owns.", "§6.13", "step")
def _i13(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    by_update = act.where(lambda a: a.name.split(".")[0] in UPDATE_SAGAS)
    sled = [v.name for v in model.layout.vars if v.name.startswith(("sa_", "rb_"))]
    return ops.Implies(by_update, ops.And(*[post[n] == pre[n] for n in sled]))


@_inv("reports_apply_monotonically", "VMM and migration records change only to a strictly "
      "larger generation (or when first created).", "§6.14", "step")
def _i14(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    conds = []
    for k in range(cfg.vmms):
        ch = ops.Or(post[f"v_state.{k}"] != pre[f"v_state.{k}"],
                    post[f"v_gen.{k}"] != pre[f"v_gen.{k}"])
        conds.append(ops.Implies(ch, ops.Or(pre[f"v_state.{k}"] == V.ABSENT,
                                            ops.ult(pre[f"v_gen.{k}"], post[f"v_gen.{k}"]))))
    for m in range(cfg.migrations):
        for side in ("src", "tgt"):
            ch = ops.Or(post[f"m_{side}_st.{m}"] != pre[f"m_{side}_st.{m}"],
                        post[f"m_{side}_gen.{m}"] != pre[f"m_{side}_gen.{m}"])
            conds.append(ops.Implies(ch, ops.Or(pre[f"m_{side}_st.{m}"] == M.ABSENT,
                                                ops.ult(pre[f"m_{side}_gen.{m}"],
                                                        post[f"m_{side}_gen.{m}"]))))
    return ops.And(*conds)


@_inv("sled_agents_own_vmm_state", "Outside the report path, Nexus writes a VMM's state only "
      "to create it or to mark it SagaUnwound (or, in rfd486, Failed).", "§6.15", "step")
def _i15(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    report = act.where(lambda a: a.name in REPORT_PATH)
    ok_states = (V.SAGA_UNWOUND, V.FAILED) if cfg.rfd486 else (V.SAGA_UNWOUND,)
    conds = []
    for k in range(cfg.vmms):
        ch = post[f"v_state.{k}"] != pre[f"v_state.{k}"]
        conds.append(ops.Implies(ops.And(ch, ops.Not(report)),
                                 ops.Or(pre[f"v_state.{k}"] == V.ABSENT,
                                        ops.In(post[f"v_state.{k}"], ok_states))))
    return ops.And(*conds)


@_inv("released_only_when_slot_empties", "Provisioning is released only by an update saga that "
      "holds the lock and whose snapshot lost the active VMM, or by a start saga undoing its own "
      "charge.", "§6.17", "step")
def _i17(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    released = ops.And(pre["prov_row"], ops.Not(post["prov_row"]))
    ok = [act.named("instance-start.ADD_VIRTUAL_RESOURCES.undo")]
    for c in range(cfg.update_children):
        ok.append(ops.And(acting_child(act, "instance-update.RECONCILE_RESOURCES", c),
                          pre[f"uc_deprov.{c}"], pre["i_updater"] == pre[f"uc_lid.{c}"],
                          pre["i_ugen"] == pre[f"uc_lgen.{c}"]))
    return ops.Implies(released, ops.Or(*ok))


@_inv("no_start_or_delete_during_update", "While an update saga that unlinks the active VMM "
      "holds the lock, no start saga re-points the instance and no delete removes it.",
      "§6.18", "step")
def _i18(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    wrote = ops.And(ops.Or(act.named(MARK), act.named("instance-delete.INSTANCE_DELETE_RECORD")),
                    ops.Or(post["i_gen"] != pre["i_gen"], post["i_state"] != pre["i_state"]))
    busy = ops.Or(*[ops.And(child_in_cs(pre, model, c), pre[f"uc_dact.{c}"] != NONE,
                            pre[f"uc_ngen.{c}"] == pre["i_gen"] + 1)
                    for c in range(cfg.update_children)])
    return ops.Not(ops.And(wrote, busy))


@_inv("no_dangling_vmm_refs", "The instance never points at a soft-deleted VMM.", "§6.19")
def _i19(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    return ops.And(*[ops.Implies(s[r] != NONE, ops.Not(s.at("v_del", s[r], False)))
                     for r in ("i_active", "i_target")])


@_inv("no_reservation_outlives_its_vmm", "A soft-deleted VMM holds no sled reservation, except "
      "while its own unwinding saga is about to release it.", "§6.20")
def _i20(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    return ops.And(*[ops.Implies(ops.And(s[f"v_res.{k}"], s[f"v_del.{k}"]),
                                 saga_unwinding_owner(s, cfg, k)) for k in range(cfg.vmms)])


@_inv("saga_unwound_never_visible", "SagaUnwound never reaches the API or a sled-agent.",
      "§6.21; §3")
def _i21(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    return ops.And(effective_state(s, cfg) != X.LEAKED_SAGA_UNWOUND,
                   *[s[f"sa_state.{k}"] != V.SAGA_UNWOUND for k in range(cfg.vmms)])


@_inv("stopped_means_startable", "An instance shown Stopped can be started: it has no active "
      "VMM, or only a SagaUnwound one.", "§6.22; §3")
def _i22(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    a = s["i_active"]
    startable = ops.Or(ops.Not(active_vmm_present(s)), s.at("v_state", a) == V.SAGA_UNWOUND)
    return ops.Implies(effective_state(s, cfg) == X.STOPPED, startable)


@_inv("migration_id_means_migrating", "An instance with a migration id and an active VMM is "
      "shown Migrating.", "§6.23; §3 rule 1")
def _i23(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    cond = ops.And(s["i_mig"] != NONE, s["i_state"] == I.VMM, active_vmm_present(s))
    return ops.Implies(cond, effective_state(s, cfg) == X.MIGRATING)


@_inv("ids_cleared_only_after_target_completed", "Migration ids are cleared only when the "
      "migration failed or its target reported Completed.", "§6.24", "step")
def _i24(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    m = pre["i_mig"]
    cleared = ops.And(m != NONE, post["i_mig"] == NONE, act.named(COMMIT))
    done = ops.Or(pre.at("m_src_st", m) == M.FAILED, pre.at("m_tgt_st", m) == M.FAILED,
                  pre.at("m_tgt_st", m) == M.COMPLETED)
    return ops.Implies(cleared, done)


DB_PREFIXES = ("i_", "v_", "m_", "prov_")


@_inv("replay_is_idempotent", "Re-executing an update-saga node after a crash, once its effect "
      "already landed, changes no database record further.", "§6.25; Steno re-execution",
      "replay")
def _i25(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    db = [v.name for v in model.layout.vars if v.name.startswith(DB_PREFIXES)]
    conds = []
    crash_of: dict[tuple[str, Any], int] = {}
    for i, a in enumerate(model.actions):
        if a.name.split(".")[0] not in UPDATE_SAGAS:
            continue
        if a.arg("outcome") in ("crash", "undo-crash"):
            crash_of[(a.name, a.arg("saga"))] = i
    for a in model.actions:
        oc = a.arg("outcome")
        if oc not in ("ok", "undo") or (a.name, a.arg("saga")) not in crash_of:
            continue
        crash = model.actions[crash_of[(a.name, a.arg("saga"))]]
        c1 = Ctx(ops, s.cur, s.sizes)
        try:
            crash.fn(c1)
        except Disabled:
            continue
        direct = Ctx(ops, s.cur, s.sizes)
        try:
            a.fn(direct)
        except Disabled:
            continue  # the node cannot complete here at all (its code panics)
        again = Ctx(ops, c1.cur, s.sizes)
        try:
            a.fn(again)
        except Disabled:
            conds.append(False)
            continue
        enabled = ops.And(*c1.guards, *direct.guards) if ops.symbolic else True
        same = ops.And(*[again.cur[n] == direct.cur[n] for n in db])
        replay_ok = ops.And(*again.guards) if ops.symbolic else True
        conds.append(ops.Implies(enabled, ops.And(replay_ok, same)))
    return ops.And(*conds)


def _update_driven(s: Ctx, cfg: Config, dead: tuple[V, ...]) -> Val:
    """If the instance links a VMM in one of `dead` or a finished migration, something will
    run an update saga for it."""
    ops = s.ops
    a, t, m = s["i_active"], s["i_target"], s["i_mig"]
    needs = ops.And(
        ops.Not(instance_deleted(s)),
        ops.Or(ops.And(present(s, a), ops.In(s.at("v_state", a), dead)),
               ops.And(present(s, t), ops.In(s.at("v_state", t), dead)),
               ops.And(m != NONE, s.at("m_src_st", m) != M.ABSENT,
                       ops.Not(s.at("m_del", m, True)),
                       ops.Or(ops.In(s.at("m_src_st", m), MIGRATION_TERMINAL),
                              ops.In(s.at("m_tgt_st", m), MIGRATION_TERMINAL)))))
    sweeps = False if cfg.has("no-background-updater") else sweep_matches(s, cfg)
    terminal = DEAD if cfg.rfd486 else (V.DESTROYED,)
    pending = []
    for k in range(cfg.vmms):
        for st, gen in ((s[f"rb_state.{k}"], s[f"rb_gen.{k}"]),
                        (s[f"sa_state.{k}"], s[f"sa_gen.{k}"])):
            pending.append(ops.And(ops.In(st, terminal), ops.Not(s[f"v_del.{k}"]),
                                   ops.ult(s[f"v_gen.{k}"], gen)))
    for j in range(cfg.migrations):
        for side in ("src", "tgt"):
            pending.append(ops.And(ops.In(s[f"sa_m{side}_st.{j}"], MIGRATION_TERMINAL),
                                   ops.Not(s[f"m_del.{j}"]),
                                   ops.ult(s[f"m_{side}_gen.{j}"], s[f"sa_m{side}_gen.{j}"])))
    if cfg.rfd486:  # the watcher makes up a Failed report for a VMM its sled lost
        for k in range(cfg.vmms):
            pending.append(ops.And(s[f"sa_state.{k}"] == V.GONE, ops.Not(s[f"v_del.{k}"]),
                                   ops.Not(ops.In(s[f"v_state.{k}"],
                                                  (V.ABSENT, V.CREATING, V.SAGA_UNWOUND,
                                                   V.DESTROYED)))))
    driver = ops.Or(update_saga_in_flight(s, cfg), sweeps, *pending)
    return ops.Implies(needs, driver)


@_inv("update_never_silently_lost", "An instance whose linked VMM is gone (as this revision "
      "counts it) or whose migration ended always has something that will run an update saga: "
      "one in flight, a report on its way, or the instance-updater sweep.",
      "§6.26; §8 liveness as a safety property")
def _i26(s: Ctx, cfg: Config, model: Model) -> Val:
    return _update_driven(s, cfg, DEAD if cfg.rfd486 else (V.DESTROYED,))


@_inv("failed_vmm_is_handled", "An instance whose active or target VMM is Failed always has "
      "something that will run an update saga for it, so it does not stay stuck showing "
      "Failed with its resources held.", "§8.7; gap G4")
def _i26b(s: Ctx, cfg: Config, model: Model) -> Val:
    return _update_driven(s, cfg, DEAD)


@_inv("update_saga_never_panics", "An update saga never reads a snapshot on which "
      "UpdatesRequired panics (a completed migration whose target VMM row is missing), "
      "neither under the lock nor when chaining after its commit: Nexus would abort and, on "
      "every recovery, abort again.",
      "§4.6 UpdatesRequired step C")
def _i27(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    no_lock = cfg.has("no-updater-lock")

    def reads(p: int) -> Val:
        held: Val = True if no_lock else s[f"up_locked.{p}"]
        return ops.And(s[f"up_mode.{p}"] == FWD, s[f"up_pc.{p}"] == FETCH_STATE,
                       s[f"up_child.{p}"] == NONE, held)

    # a child that crashed after its commit re-executes it, and the chain reads again
    commit = child_range(model)[1]
    chaining = [ops.And(s[f"uc_mode.{c}"] == FWD, s[f"uc_pc.{c}"] == commit, s[f"uc_rp.{c}"])
                for c in range(cfg.update_children)]
    reading = ops.Or(*[reads(p) for p in range(cfg.update_parents)], *chaining)
    return ops.Not(ops.And(reading, ops.Not(instance_deleted(s)),
                           updates_required(s, cfg, observe=True).panic))


# ------------------------------------------------------------- Oxide's PlusCal update spec
@_inv("migration_requires_partner", "A target VMM id always names the target of the linked "
      "migration record (MigrationRequiresPartner).", "§1.3; §6.2", source="PlusCal")
def _p1(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    t, m = s["i_target"], s["i_mig"]
    return ops.Implies(t != NONE, ops.And(m != NONE, s.at("m_tgt", m, NONE) == t))


@_inv("only_one_migration_per_vm", "No VMM takes part in two migrations in progress on the "
      "sleds at once (OnlyOneMigrationPerVm).", "§2.1; §4.4", source="PlusCal")
def _p2(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    conds = []
    for x in range(cfg.migrations):
        for y in range(x + 1, cfg.migrations):
            both = ops.And(s[f"sa_msrc_st.{x}"] == M.IN_PROGRESS,
                           s[f"sa_msrc_st.{y}"] == M.IN_PROGRESS)
            conds.append(ops.Implies(both, s[f"m_src.{x}"] != s[f"m_src.{y}"]))
    return ops.And(*conds)


@_inv("active_vms_have_resources", "An instance whose active VMM is alive holds its "
      "provisioning charge and the VMM's sled reservation, unless its start saga has not "
      "charged yet or the recorded state already obliges an update saga to drop that VMM "
      "(ActiveVmsHaveResources).", "§4.2; §4.6 On Unwinding; §6.16-17", source="PlusCal")
def _p3(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    a = s["i_active"]
    alive = ops.And(present(s, a), ops.In(s.at("v_state", a),
                                          (V.CREATING, *LIVE)))
    # An update saga releases the charge just before its commit unlinks the VMM; if the
    # commit then fails, the saga unwinds without restoring it (SPEC §4.6 "On Unwinding") and
    # a later saga redoes the work. Either way the database already says the VMM goes.
    u = updates_required(s, cfg, observe=True)
    dropping = ops.And(u.required, u.deprovision)
    return ops.Implies(ops.And(alive, ops.Not(start_saga_owes_charge(s, cfg, a))),
                       ops.And(ops.Or(s["prov_row"], dropping), s.at("v_res", a, False)))


@_inv("stopped_instance_has_no_vms", "An instance shown Stopped links no target, no migration "
      "and no live active VMM (StoppedInstanceHasNoVms).", "§3; §6.22", source="PlusCal")
def _p4(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    a = s["i_active"]
    no_live = ops.Or(ops.Not(present(s, a)), s.at("v_state", a) == V.SAGA_UNWOUND)
    return ops.Implies(effective_state(s, cfg) == X.STOPPED,
                       ops.And(s["i_target"] == NONE, s["i_mig"] == NONE, no_live))


@_inv("migration_requires_active_vm", "A migration id is set only while the instance has an "
      "active VMM (MigrationRequiresActiveVm).", "§6.2", source="PlusCal")
def _p5(s: Ctx, cfg: Config, model: Model) -> Val:
    return s.ops.Implies(s["i_mig"] != NONE, s["i_active"] != NONE)


@_inv("migration_target_not_stolen", "A set target id is replaced only by a new migrate saga "
      "over a SagaUnwound target with a Failed/Failed migration, or cleared by an update "
      "(MigrationTargetNotStolen).", "§4.4 (c)", "step", source="PlusCal")
def _p6(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    t = pre["i_target"]
    replaced = ops.And(t != NONE, post["i_target"] != t, post["i_target"] != NONE)
    return ops.Implies(replaced, ops.And(act.named(SET_IDS), _left_behind(pre)))


@_inv("destroyed_vms_stay_destroyed", "A VMM that is gone (Destroyed, Failed or SagaUnwound) "
      "never comes back to life, in the database or on its sled (DestroyedVmsStayDestroyed).",
      "§2.1", "step", source="PlusCal")
def _p7(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    ops = pre.ops
    dead = (V.DESTROYED, V.FAILED, V.SAGA_UNWOUND)
    conds = []
    for k in range(cfg.vmms):
        conds.append(ops.Implies(ops.In(pre[f"v_state.{k}"], dead),
                                 ops.In(post[f"v_state.{k}"], dead)))
        conds.append(ops.Implies(ops.In(pre[f"sa_state.{k}"], (V.DESTROYED, V.FAILED)),
                                 post[f"sa_state.{k}"] == pre[f"sa_state.{k}"]))
    return ops.And(*conds)


@_inv("updater_holds_lock_in_critical_section", "An update saga inside its critical section "
      "holds the lock with its own token (UpdaterLockNotStolen, state form).", "§5",
      source="PlusCal")
def _p8(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    return ops.And(*[ops.Implies(ops.And(child_in_cs(s, model, c), ops.Not(instance_deleted(s))),
                                 ops.And(s["i_updater"] == s[f"uc_lid.{c}"],
                                         s["i_ugen"] == s[f"uc_lgen.{c}"]))
                     for c in range(cfg.update_children)])


# ------------------------------------------------------------------------ provisioning
@_inv("never_charged_twice", "The instance is charged at most once: the counters never exceed "
      "one instance's worth.", "§1.4; §6.16", source="provisioning")
def _v1(s: Ctx, cfg: Config, model: Model) -> Val:
    return s["prov_cnt"] <= 1  # signed comparison in both meanings


@_inv("never_released_when_not_charged", "A release lowers the counters only when a charge "
      "(the resource row) exists.", "§1.4; §6.16", "step", source="provisioning")
def _v2(pre: Ctx, post: Ctx, act: ActView, cfg: Config, model: Model) -> Val:
    dropped = post["prov_cnt"] < pre["prov_cnt"]
    return pre.ops.Implies(dropped, pre["prov_row"])


@_inv("counter_never_negative", "The provisioning counters never go below zero.", "§1.4; #5042",
      source="provisioning")
def _v3(s: Ctx, cfg: Config, model: Model) -> Val:
    return s["prov_cnt"] >= 0


@_inv("counter_matches_rows", "The counters equal the charges recorded by resource rows.",
      "§1.4", source="provisioning")
def _v4(s: Ctx, cfg: Config, model: Model) -> Val:
    ops = s.ops
    return ops.Or(ops.And(s["prov_row"], s["prov_cnt"] == 1),
                  ops.And(ops.Not(s["prov_row"]), s["prov_cnt"] == 0))


def _sagas_settled(s: Ctx, cfg: Config) -> Val:
    """No start saga and no update saga is running: none of them can still settle a charge.
    A stuck start saga (opt-in `stuck_undos`) runs nothing more, so it counts as settled; it
    got stuck after its charge's undo had run."""
    ops = s.ops
    done = (lambda t: ops.Or(s[f"st_mode.{t}"] == IDLE, s[f"st_mode.{t}"] == STUCK)) \
        if cfg.stuck_undos else (lambda t: s[f"st_mode.{t}"] == IDLE)
    return ops.And(*[done(t) for t in range(cfg.start_sagas)],
                   ops.Not(update_saga_in_flight(s, cfg)))


@_inv("no_charge_after_delete", "A deleted instance holds no provisioning charge once no saga "
      "that could still release it is running.", "§4.5; Q3 (#4226)", source="provisioning")
def _v5(s: Ctx, cfg: Config, model: Model) -> Val:
    return s.ops.Implies(s.ops.And(instance_deleted(s), _sagas_settled(s, cfg)),
                         s.ops.Not(s["prov_row"]))


@_inv("no_charge_without_vmm", "An instance without an active VMM is charged only while a saga "
      "that will settle the charge is still running.", "§6.17; Q3", source="provisioning")
def _v6(s: Ctx, cfg: Config, model: Model) -> Val:
    return s.ops.Implies(s.ops.And(s["i_active"] == NONE, _sagas_settled(s, cfg)),
                         s.ops.Not(s["prov_row"]))


INVARIANTS: dict[str, Invariant] = {inv.id: inv for inv in REGISTRY}


def check_invariant_ids(ids: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    from .vocab import UsageError

    bad = [i for i in ids if i not in INVARIANTS]
    if bad:
        raise UsageError(f"unknown invariant {', '.join(map(repr, bad))}; valid invariants: "
                         + ", ".join(INVARIANTS))
    return tuple(ids)
