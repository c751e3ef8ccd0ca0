"""Replay of model traces against the implementation, step by step (issue 4, part 2).

A `Replayer` drives one `impl.controller.Controller` through the actions of one ITF trace and,
after every step, compares the model's observed variables with the abstraction of the
database (`conformance/refinement.py`). The first difference ends the replay with a
`Mismatch`: the step, the action, a field diff and the command that reruns it.

How model actions become controller calls (docs/conformance.md has the full table):

* `user.*` are API calls on the replica `nexus-api`; a refusal where the model proceeds is a
  mismatch.
* A saga node action runs the implementation nodes of the model node's group
  (`conformance/nodes.py`) with the outcome mapped: `ok` -> OK, `crash` -> CRASH_AFTER on the
  group's last node followed by recovery of the replica, `fail` -> FAIL_BEFORE, `ambiguous` ->
  FAIL_AFTER, `unhealthy` -> OK with the sled unreachable for the step (the node's own error
  handling runs), `undo` -> OK, `undo-crash` -> CRASH_AFTER then recovery. Nodes the model leaves
  out, and a parent's collection of its finished child, run with OK as soon as they are
  runnable.
* Each model saga slot runs on its own replica (`nx-st0`, `nx-up1`, ...): the replay moves
  every new saga there, so a crash outcome, which crashes a whole replica in the
  implementation, stops only that saga, as in the model. `nexus.crash_and_recover(nexus=n)`
  crashes and recovers the replicas of the parent update-saga slots model replica n owns.
* Sled-agent events change only the environment (`conformance/sled.py`); report deliveries
  push the model's in-flight report through `cpapi_instances_put`; `update=none` makes the
  saga start fail, as when Nexus dies between the database write and the saga start.
* Background tasks run for the one record the model action names (`poll_vmm`, `reap_vmm`);
  the task's own query must list that record.

Four checks besides the state comparison:

* After every step, the state the API shows (`Nexus.instance_view`, SPEC §3) is the model's
  effective state.
* impl's own simulated sled-agents run underneath the oracle, loaded with the model's sled
  state before every step; every sled call and sled event also runs on them and must agree
  with the model's sled (`conformance/sim_sled.py`).
* After every step, the requests the model refuses (start, migrate, delete, stop, reboot,
  for a protocol reason rather than the model's bounds) must be refused by `nexus-api`
  without starting a saga or calling a sled (`_probe_refusals`).
* After the last step, the implementation is left to settle alone and must satisfy the
  stress test's database invariants (`_settle_check`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, update

from impl.background import abandoned_vmm_reaper, instance_watcher
from impl.config import LifecycleConfig
from impl.controller import Controller
from impl.datastore import Datastore, schema
from impl.datastore.records import MigrationRuntime, VmmRuntime, now
from impl.errors import ApiError, InternalError, NexusCrashed, NotFound
from impl.executor.dag import Outcome
from impl.history import HistoryRecorder
from impl.nexus.nexus import Nexus
from impl.sled_agent.report import SledVmmState
from model.actions import Model, model_for
from model.effective_state import active_vmm_present, effective_state
from model.expr import CONCRETE, Ctx
from model.findings import findings_for
from model.instance_request_state import ALLOWED as REQUEST_STATES
from model.instance_start import start_allowed
from model.notify_instance_updated import report_rejected
from model.saga import Action
from model.state import IDLE, NONE, STUCK
from model.step import State
from model.trace import LoadedTrace
from model.updater_lock import instance_deleted
from model.vocab import ExternalState, MigrationState, VmmState

from .divergences import divergence_at
from .nodes import GROUPS, PREFIX_OF, SAGA_NAMES, UNMODELLED
from .refinement import (
    abstract,
    describe,
    diff,
    find_run,
    observe_model,
    observed_vars,
    saga_keys,
)
from .sim_sled import SimSleds
from .sled import SledOracle, install
from .slots import BindingConflict, SagaKey, SlotMap

API = "nexus-api"
ENVIRONMENT_ONLY = ("sled-agent.vmm_transition", "sled-agent.migration_")
# the stress-test checks (impl/invariants.py) that the baseline's findings break
BASELINE_LEAKS = ("charge held by ", "charge left for deleted instance ",
                  "has no sled reservation", "without a live VMM")
SAGA_PREFIXES = frozenset(SAGA_NAMES)
NCPUS, MEMORY = 2, 1024


_SET_OWNER = (update(schema.saga).where(schema.saga.c.id == bindparam("b_id"))
              .values(owner=bindparam("b_owner")))


class Refused(Exception):
    """The implementation would not take a step the model takes."""


class Accepted(Exception):
    """The implementation would take a request the model refuses."""


@dataclass
class Mismatch:
    """The first step at which the implementation and the model disagree."""

    step: int
    label: str
    diff: dict[str, tuple[Any, Any]]
    note: str = ""
    rerun: str = ""

    def render(self) -> str:
        lines = [f"step {self.step}: {self.label}"]
        if self.note:
            lines.append(f"  {self.note}")
        for k, (m, i) in self.diff.items():
            lines.append(f"  {k}: model {describe(k, m)}  impl {describe(k, i)}")
        if self.rerun:
            lines.append(f"  rerun: {self.rerun}")
        return "\n".join(lines)


@dataclass
class ReplayResult:
    path: str
    steps: int  # steps replayed (and compared) without a mismatch
    mismatch: Mismatch | None = None
    calls: Counter[str] = field(default_factory=Counter)
    # impl's simulated sleds: comparisons made, and differences `sim_sled.KNOWN` explained
    sled_compared: Counter[str] = field(default_factory=Counter)
    sled_known: Counter[str] = field(default_factory=Counter)
    settle_excused: list[str] = field(default_factory=list)  # see Replayer._settle_check

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def rerun_command(path: str, db_url: str, impl_mutants: tuple[str, ...] | None) -> str:
    cmd = f"lifecycle traces replay {path}"
    if db_url != "sqlite://":
        cmd += f" --db {db_url}"
    for m in impl_mutants or ():
        cmd += f" --impl-mutant {m}"
    return cmd


class Replayer:
    """Replays one loaded trace on a fresh implementation."""

    def __init__(self, trace: LoadedTrace, path: str = "<trace>", db_url: str = "sqlite://",
                 pg_schema: str | None = None, impl_mutants: tuple[str, ...] | None = None,
                 history: Path | None = None) -> None:
        self.trace = trace
        self.history = history  # where impl/history.py records the replay, if anywhere
        self.path = path
        self.db_url = db_url
        self.model: Model = model_for(trace.cfg)
        self.impl_mutants = impl_mutants
        mutants = trace.cfg.mutants if impl_mutants is None else impl_mutants
        self.slots = SlotMap()
        keys = [k for k, _ in saga_keys(self.model)]
        self.nexus_of: dict[SagaKey, str] = {k: self._nexus_name(k) for k in keys}
        # an in-memory SQLite database comes from a spare engine when an earlier replay left
        # one (emptied): no schema creation and no statement compilation per trace
        ds = Datastore(db_url, LifecycleConfig(trace.cfg.revision, frozenset(mutants)),
                       pg_schema=pg_schema, reuse=True)
        self.ctrl = Controller(db_url=db_url, revision=trace.cfg.revision, mutants=mutants,
                               nexus_ids=(API, *self.nexus_of.values()), pg_schema=pg_schema,
                               datastore=ds)
        self.sims = SimSleds(self.ctrl, self.slots)
        self.oracle = SledOracle(self.slots, sims=self.sims)
        install(self.ctrl.fleet, self.oracle)
        self.instance_id = ""
        self.calls: Counter[str] = Counter()
        self._probed: set[tuple[object, ...]] = set()
        self.settle_excused: list[str] = []
        self.observed = observed_vars(self.model) + [
            v.name for v in self.model.layout.vars if v.name.split("_")[0] in SAGA_PREFIXES]

    @staticmethod
    def _nexus_name(key: SagaKey) -> str:
        prefix, slot = key
        return f"nx-{prefix}" if slot is None else f"nx-{prefix}{slot}"

    # ------------------------------------------------------------------ driving
    def run(self) -> ReplayResult:
        states, labels = self.trace.states, self.trace.labels
        rerun = rerun_command(self.path, self.db_url, self.impl_mutants)
        recorder = HistoryRecorder(self.history).attach(self.ctrl.datastore) \
            if self.history is not None else None
        try:
            first = self._setup(states[0])
            if first is not None:
                first.rerun = rerun
                return self._result(0, first)
            for i, label in enumerate(labels, start=1):
                mm = self.step(i, label, states[i - 1], states[i])
                if mm is not None:
                    mm.rerun = rerun
                    return self._result(i - 1, mm)
            mm = self._settle_check(len(labels), states[-1])
            if mm is not None:
                mm.rerun = rerun
            return self._result(len(labels), mm)
        finally:
            if recorder is not None:
                recorder.detach(self.ctrl.datastore)
            self.ctrl.close(drop_schema=True)

    def _settle_check(self, n: int, last: State) -> Mismatch | None:
        """After the last step: the implementation, left to itself from the trace's final
        state, settles (`Controller.settle`: every report delivered, every saga run, every VMM
        advanced, the background tasks run) to a state that satisfies the stress test's
        database invariants (`impl/invariants.py`). Skipped with defects switched on, which
        are meant to break them, and for a counterexample of a protocol finding
        (`model/findings.py`), which breaks them by design. The simulated sleds start from the model's final sled state
        with the model's reports in flight queued, and answer alone from then on.

        Excused (kept in `settle_excused`, every other check still applies): at the baseline
        the charge and reservation checks, which its protocol findings break (Q1, Q1b, Q3:
        `mark_instance_failed`, #4226; G4: Failed VMMs are never cleaned up; F2: an unwind
        that leaves a VMM whose generation moved); in rfd486 a replica crash while settling,
        which with every node run OK can only be an update saga's panic (finding F4); and the
        leak checks when a saga is stuck (opt-in `stuck_undos`)."""
        if self.ctrl.datastore.config.mutants or self.trace.meta.get("invariant") in (
                findings_for(self.trace.cfg.revision)):
            return None
        label = "settle after the trace (impl alone)"
        self.sims.load(last, self.trace.cfg.vmms)
        for k in range(self.trace.cfg.vmms):
            if int(last[f"rb_state.{k}"]) != VmmState.ABSENT and self.slots.vmms.id(k):
                vid = self._vmm_id(k)
                sled = self.sims.sled_of(vid) or next(iter(self.ctrl.fleet.sleds))
                self.ctrl.fleet._emit(sled, self._report(k, last))
        self.oracle.free = True
        crashes = sum(nx.crashes for nx in self.ctrl.nexuses.values())
        try:
            rounds = self.ctrl.settle()
            bad = self.ctrl.violations() + [
                v for v in self.ctrl.quiescent_violations() if v not in self.ctrl.violations()]
        except Exception as e:  # noqa: BLE001 - any implementation error is a finding
            return Mismatch(n, label, {}, f"the implementation raised {type(e).__name__}: {e}")
        finally:
            self.oracle.free = False
        panicked = sorted(sid for nx in self.ctrl.nexuses.values() for sid in nx.executor.panicked)
        stuck = sorted({sd.var("mode", n) for sd in self.model.sagas for n in range(sd.slots)
                        if int(last[sd.var("mode", n)]) == STUCK})
        if stuck:
            # a stuck saga (opt-in `stuck_undos`) keeps what it holds until an operator acts
            # (SPEC "Saga semantics"): the leak checks cannot apply, only the rest of settling
            self.settle_excused = [f"stuck saga ({', '.join(stuck)}): left for an operator",
                                   *bad]
            return None
        if panicked and self.trace.cfg.revision == "rfd486":
            # settling runs every node OK, so a replica crash here is an update saga's panic
            # (finding F4); the instance is stuck by design, so its checks are excused
            crashed = sum(nx.crashes for nx in self.ctrl.nexuses.values()) - crashes
            self.settle_excused = [f"F4: {len(panicked)} saga(s) panicked while settling "
                                   f"({crashed} replica crashes)", *bad]
            return None
        if self.trace.cfg.revision == "baseline":
            self.settle_excused = [v for v in bad if any(m in v for m in BASELINE_LEAKS)]
            bad = [v for v in bad if v not in self.settle_excused]
        if bad:
            return Mismatch(n, label, {}, f"after {rounds} rounds: " + "; ".join(bad))
        return None

    def _result(self, steps: int, mm: Mismatch | None) -> ReplayResult:
        return ReplayResult(self.path, steps, mm, self.calls, self.sims.compared,
                            self.sims.known, self.settle_excused)

    def _setup(self, s0: State) -> Mismatch | None:
        self.oracle.pre = self.oracle.post = s0
        iid, sid = self.ctrl.create_instance("inst", NCPUS, MEMORY, nexus=API)
        self.instance_id = self.oracle.instance_id = self.sims.instance_id = iid
        self.slots.sagas[("cr", None)] = sid
        self._relocate(sid, self.nexus_of[("cr", None)])
        self.ctrl.step(sid, Outcome.OK)
        return self._compare(0, "init", s0)

    def step(self, i: int, label: str, pre: State, post: State) -> Mismatch | None:
        action = self.model.actions[self.model.action_index(label)]
        return self._tag(self._step(i, label, action, pre, post), action, pre)

    def _step(self, i: int, label: str, action: Action, pre: State,
              post: State) -> Mismatch | None:
        self.oracle.pre, self.oracle.post, self.oracle.unhealthy = pre, post, False
        self.calls[action.name] += 1
        env = action.name.startswith(ENVIRONMENT_ONLY)
        self.sims.divergences.clear()
        try:
            if not env:
                self.sims.load(pre, self.trace.cfg.vmms)
            self._execute(action, pre, post)
            self._settle()
            self._bind(pre, post)
            if not env:
                self.sims.check(label, post, self.trace.cfg.vmms)
        except Refused as e:
            return Mismatch(i, label, {}, f"the implementation refused: {e}")
        except BindingConflict as e:
            return Mismatch(i, label, {}, str(e))
        except Exception as e:  # noqa: BLE001 - any implementation error is a finding
            return Mismatch(i, label, {}, f"the implementation raised {type(e).__name__}: {e}")
        if not (env and all(pre[n] == post[n] for n in self.observed)):
            # (otherwise nothing ran in the implementation and only sled variables changed in
            # the model: both sides are as they were after the previous compared step)
            mm = self._compare(i, label, post)
            if mm is not None:
                return mm
        if self.sims.divergences:
            return Mismatch(i, label, {}, "impl's simulated sled-agent disagrees with the "
                                          f"model's sled: {self.sims.divergences[0]}")
        if env:
            return None
        shown = self.ctrl.nexus(API).instance_view(self.instance_id)
        eff = ExternalState(int(effective_state(
            Ctx(CONCRETE, dict(post), self.model.layout.sizes), self.trace.cfg)))
        if shown != eff:
            return Mismatch(i, label, {}, f"the API shows the instance {shown.name}, the "
                                          f"model's effective state is {eff.name}")
        try:
            self._probe_refusals(post)
        except Accepted as e:
            return Mismatch(i, label, {}, f"after the step, the implementation accepted {e}")
        return None

    def _tag(self, mm: Mismatch | None, action: Action, pre: State) -> Mismatch | None:
        d = divergence_at(action, pre) if mm is not None else None
        if mm is not None and d is not None:
            mm.note = (f"known divergence {d.name} (SPEC backs the {d.spec_backs}): "
                       f"{d.summary}. " + mm.note).strip()
        return mm

    def _compare(self, i: int, label: str, post: State) -> Mismatch | None:
        d = diff(observe_model(self.model, post),
                 abstract(self.ctrl, self.model, self.instance_id, self.slots, NCPUS))
        return Mismatch(i, label, d) if d else None

    # ------------------------------------------------------------------ actions
    def _execute(self, a: Action, pre: State, post: State) -> None:
        name = a.name
        if name.startswith("user."):
            self._user(a, pre, post)
        elif name.startswith(ENVIRONMENT_ONLY):
            # environment only: the oracle's next state carries it; impl's simulated sleds
            # take the same step
            self.sims.event(name, {k: str(v) for k, v in a.args}, pre, post,
                            self.trace.cfg.vmms)
        elif name == "sled-agent.deliver_report":
            self._deliver(a, pre)
        elif name in ("instance-watcher.poll", "instance-watcher.vmm_gone"):
            self._watch(a)
        elif name == "instance-updater.activate":
            self.ctrl.run_background("instance_updater", nexus=API)
        elif name == "abandoned-vmm-reaper.reap":
            self._reap(a)
        elif name == "nexus.crash_and_recover":
            self._crash_replica(int(a.arg("nexus") or 0))
        else:
            self._saga_node(a)

    def _vmm_id(self, k: int) -> str:
        vid = self.slots.vmms.id(k)
        if vid is None:
            raise Refused(f"VMM slot {k} has no implementation id")
        return vid

    def _user(self, a: Action, pre: State, post: State) -> None:
        c, iid = self.ctrl, self.instance_id
        op = a.name.removeprefix("user.")
        if op == "instance_start":
            if c.start_instance(iid, nexus=API) is None:
                raise Refused("instance_start was a no-op")
        elif op == "instance_migrate":
            snap = c.datastore.instance_fetch_all(iid)
            src = snap.active_vmm.sled_id if snap and snap.active_vmm else ""
            dst = next(s for s in c.fleet.sleds if s != src)
            c.migrate_instance(iid, dst, nexus=API)
        elif op == "instance_delete":
            c.delete_instance(iid, nexus=API)
        elif op in ("instance_stop", "instance_reboot"):
            sled = a.arg("sled")
            self.oracle.unhealthy = sled == "unhealthy"
            call = c.stop_instance if op == "instance_stop" else c.reboot_instance
            k = int(a.arg("vmm") or 0)
            try:
                # only an answer applied with update=none must not start an update saga
                with self._saga_start(c.nexus(API), a.arg("update") != "none"):
                    call(iid, nexus=API)
            except ApiError as e:
                # the sled took the request; its answer names a migration row the database
                # refuses, so notify_instance_updated fails and the caller gets the error
                answered = sled == "ok" and isinstance(e, NotFound | InternalError) and \
                    self._rejected(k, post)
                if sled == "ok" and not answered:
                    raise Refused(f"{op}: {type(e).__name__}: {e}") from e
            else:
                if sled != "ok":
                    raise Refused(f"{op} succeeded although the sled answered {sled}")
        else:
            raise Refused(f"no mapping for {a.name}")

    def _report(self, k: int, pre: State) -> SledVmmState:
        """The model's in-flight report of VMM k, with the migration sides read now."""
        def side(m: int, which: str) -> MigrationRuntime | None:
            mid = self.slots.migrations.id(m) if m != NONE else None
            st = int(pre[f"sa_m{which}_st.{m}"]) if m != NONE else 0
            if mid is None or st == MigrationState.ABSENT:
                return None
            return MigrationRuntime(mid, MigrationState(st), int(pre[f"sa_m{which}_gen.{m}"]), now())

        return SledVmmState(
            self.instance_id, self._vmm_id(k),
            VmmRuntime(VmmState(int(pre[f"rb_state.{k}"])), int(pre[f"rb_gen.{k}"]), now()),
            migration_in=side(int(pre[f"sa_min.{k}"]), "tgt"),
            migration_out=side(int(pre[f"sa_mout.{k}"]), "src"),
        )

    def _rejected(self, k: int, pre: State) -> bool:
        """Whether the model's `vmm_and_migration_update_runtime` refuses VMM k's report in
        state `pre` (a migration side names a soft-deleted row: Gone, SPEC §4.1 step 1)."""
        return bool(report_rejected(Ctx(CONCRETE, pre, self.model.layout.sizes),
                                    self.trace.cfg, k))

    def _deliver(self, a: Action, pre: State) -> None:
        k = int(a.arg("vmm") or 0)
        nx = self.ctrl.nexus(API)
        rejected = self._rejected(k, pre)
        with self._saga_start(nx, a.arg("update") == "started"):
            try:
                nx.cpapi_instances_put(self._report(k, pre))
            except (NotFound, InternalError) as e:
                if not rejected:
                    raise
                self.calls[f"report rejected ({type(e).__name__})"] += 1
            else:
                if rejected:
                    raise Accepted("the implementation applied a report naming a migration "
                                   "row the model's database refuses (SPEC §4.1 step 1)")

    def _watch(self, a: Action) -> None:
        vid = self._vmm_id(int(a.arg("vmm") or 0))
        rec = next((v for v in self.ctrl.datastore.vmm_list_for_watcher() if v.id == vid), None)
        if rec is None:
            raise Refused(f"instance-watcher does not list VMM {vid}")
        nx = self.ctrl.nexus(API)
        with self._saga_start(nx, a.arg("update") == "started"):
            instance_watcher.poll_vmm(nx, rec, Counter())

    def _reap(self, a: Action) -> None:
        vid = self._vmm_id(int(a.arg("vmm") or 0))
        rec = next((v for v in self.ctrl.datastore.vmm_list_abandoned() if v.id == vid), None)
        if rec is None:
            raise Refused(f"abandoned-vmm-reaper does not list VMM {vid}")
        abandoned_vmm_reaper.reap_vmm(self.ctrl.nexus(API), rec)

    @contextmanager
    def _saga_start(self, nx: Nexus, allowed: bool, everything: bool = False) -> Iterator[None]:
        """With `allowed` false, starting an update saga (with `everything`, any saga) fails
        (Nexus died after the write)."""
        if allowed:
            yield
            return
        orig = nx.start_saga

        def refuse(name: str, params: dict[str, Any]) -> str:
            if everything or name == "start-instance-update":
                raise RuntimeError(f"replay: Nexus stopped before starting the {name} saga")
            return orig(name, params)

        setattr(nx, "start_saga", refuse)  # noqa: B010 - instance override of a method
        try:
            yield
        finally:
            delattr(nx, "start_saga")

    def _crash_replica(self, n: int) -> None:
        for (prefix, slot), nid in self.nexus_of.items():
            if prefix == "up" and slot is not None and slot % self.trace.cfg.nexus_replicas == n:
                self.ctrl.crash_nexus(nid)
                self.ctrl.recover_nexus(nid)

    # ------------------------------------------------------------------ refusals
    def _refused_requests(self, post: State) -> tuple[tuple[object, ...], list[str]]:
        """The external requests the model refuses in `post` for a reason of the protocol
        (not of the model's bounds), and the key of the facts that decide it."""
        cfg = self.trace.cfg
        ctx = Ctx(CONCRETE, dict(post), self.model.layout.sizes)
        deleted = bool(instance_deleted(ctx))
        present = bool(active_vmm_present(ctx))
        eff = int(effective_state(ctx, cfg))
        active = int(post["i_active"])
        running = present and int(post[f"v_state.{active}"]) == VmmState.RUNNING
        key = (deleted, present, eff, running, int(post["i_mig"]) == NONE,
               int(post["dl_mode"]) == IDLE)
        out = []
        if deleted or not start_allowed(ctx, cfg):
            out.append("start")
        if deleted or not (running and int(post["i_mig"]) == NONE):
            out.append("migrate")
        elif present:
            # the model leaves the destination to the caller; a bad one is refused
            out += ["migrate to its own sled", "migrate to an unknown sled"]
        if (deleted or eff not in (ExternalState.STOPPED, ExternalState.FAILED)) and int(
                post["dl_mode"]) == IDLE:
            out.append("delete")
        if deleted or not present or eff not in REQUEST_STATES:
            out += ["stop", "reboot"]
        return key, out

    def _probe_refusals(self, post: State) -> None:
        """Ask the implementation (replica `nexus-api`) for every request the model refuses in
        `post`: each must be refused (an API error, or for start and stop a no-op), without a
        saga started or a sled called. Each combination of the deciding facts is probed once
        per trace. Where the model would migrate, a migration to the instance's own sled or to
        an unknown one is probed instead (the model leaves the destination to the caller)."""
        key, refused = self._refused_requests(post)
        if key in self._probed:
            return
        self._probed.add(key)
        c, iid = self.ctrl, self.instance_id
        here = dst = next(iter(c.fleet.sleds))
        snap = c.datastore.instance_fetch_all(iid)
        if snap is not None and snap.active_vmm is not None:
            here = snap.active_vmm.sled_id
            dst = next(s for s in c.fleet.sleds if s != here)
        calls: dict[str, Callable[[], object]] = {
            "start": lambda: c.start_instance(iid, nexus=API),
            "migrate": lambda: c.migrate_instance(iid, dst, nexus=API),
            "migrate to its own sled": lambda: c.migrate_instance(iid, here, nexus=API),
            "migrate to an unknown sled": lambda: c.migrate_instance(iid, "no-such-sled",
                                                                     nexus=API),
            "delete": lambda: c.delete_instance(iid, nexus=API),
            "stop": lambda: c.stop_instance(iid, nexus=API),
            "reboot": lambda: c.reboot_instance(iid, nexus=API),
        }
        nx = c.nexus(API)
        for what in refused:
            sled_calls = len(self.oracle.calls)
            try:
                with self._saga_start(nx, False, everything=True):
                    res = calls[what]()
            except ApiError:
                res = None
            except RuntimeError as e:
                raise Accepted(f"instance_{what}, which the model refuses here ({e})") from e
            if len(self.oracle.calls) != sled_calls:
                raise Accepted(f"instance_{what} far enough to call a sled-agent, which the model "
                               "refuses here")
            if res is not None:
                raise Accepted(f"instance_{what}, which the model refuses here")

    # ------------------------------------------------------------------ sagas
    def _saga_node(self, a: Action) -> None:
        kind, _, node = a.name.partition(".")
        undo = node.endswith(".undo")
        node = node.removesuffix(".undo")
        if kind not in PREFIX_OF or node not in GROUPS[kind]:
            raise Refused(f"no mapping for {a.name}")
        slot = a.arg("saga")
        key: SagaKey = (PREFIX_OF[kind], None if slot is None else int(slot))
        sid = self.slots.sagas.get(key)
        found = find_run(self.ctrl, sid) if sid else None
        if sid is None or found is None:
            raise Refused(f"no live implementation saga for {kind} slot {slot}")
        ex, run = found
        nxt = ex._next(run)
        group = GROUPS[kind][node]
        want = "undo" if undo else "forward"
        if nxt is None or nxt[1] != want or run.nodes[nxt[0]].name not in group:
            at = "nothing runnable" if nxt is None else f"{nxt[1]} {run.nodes[nxt[0]].name}"
            raise Refused(f"saga {kind} is at {at}, the model runs {want} {node}")
        outcome = str(a.arg("outcome"))
        owner = ex.owner
        if undo:
            if outcome == "undo-unhealthy":
                # the undo must fail and leave the saga stuck, as in the model
                self._run_unhealthy(a, owner, sid, "undo_failed",
                                    "the model's undo fails and the saga is stuck")
                return
            crash = outcome == "undo-crash"
            self._run_step(owner, sid, Outcome.CRASH_AFTER if crash else Outcome.OK)
            if crash:
                self.ctrl.recover_nexus(owner)
            return
        idx = nxt[0]
        last = idx
        while last + 1 < len(run.nodes) and run.nodes[last + 1].name in group:
            last += 1
        if outcome == "fail":
            self._run_step(owner, sid, Outcome.FAIL_BEFORE)
            return
        if outcome == "unhealthy":
            self._run_unhealthy(a, owner, sid, "failed", "the model's node fails")
            return
        for t in range(idx, last + 1):
            oc = Outcome.OK
            if t == last and outcome == "crash":
                oc = Outcome.CRASH_AFTER
            elif t == last and outcome == "ambiguous":
                oc = Outcome.FAIL_AFTER
            event = self._run_step(owner, sid, oc)
            if event == "crashed":
                self.ctrl.recover_nexus(owner)
                return
            if event != "succeeded":
                return

    def _run_unhealthy(self, a: Action, owner: str, saga_id: str, want: str,
                       model_says: str) -> None:
        """The node (or undo) really runs, and its sled call meets an unreachable sled (SPEC
        §4.2 node 8): the implementation's own error handling must end the step with event
        `want`, as the model's `unhealthy` / `undo-unhealthy` outcome does."""
        self.oracle.unhealthy = True
        try:
            event = self._run_step(owner, saga_id, Outcome.OK)
        finally:
            self.oracle.unhealthy = False
        if event != want:
            raise Refused(f"{a.name} with an unhealthy sled: the step ended {event}, "
                          f"{model_says}")

    def _run_step(self, owner: str, saga_id: str, outcome: Outcome) -> str:
        """One saga step on its known owner (skips the controller's owner lookup); returns
        the step's event, `crashed` for a crash outcome."""
        try:
            return self.ctrl.nexuses[owner].step_saga(saga_id, outcome).event
        except NexusCrashed:
            return "crashed"

    def _settle(self) -> None:
        """Run what the model does not see: unmodelled nodes and child-result collection."""
        progress = True
        while progress:
            progress = False
            for info in self.ctrl.runnable():
                if info.direction == "finish" or info.node_name in UNMODELLED[info.saga_name]:
                    self._run_step(info.owner, info.saga_id, Outcome.OK)
                    progress = True
                    break

    # ------------------------------------------------------------------ slot binding
    def _relocate(self, saga_id: str, nexus_id: str) -> None:
        found = find_run(self.ctrl, saga_id)
        if found is None or found[0].owner == nexus_id:
            return
        ex, run = found
        del ex._runs[saga_id]
        self.ctrl.nexuses[nexus_id].executor._runs[saga_id] = run
        with self.ctrl.datastore.tx() as conn:
            conn.execute(_SET_OWNER, {"b_id": saga_id, "b_owner": nexus_id})

    def _bind(self, pre: State, post: State) -> None:
        bound = set(self.slots.sagas.values())
        fresh = [(sid, run.name) for nx in self.ctrl.nexuses.values()
                 for sid, run in nx.executor._runs.items() if sid not in bound]
        for sid, name in fresh:
            prefix = PREFIX_OF[name]
            for key, i in saga_keys(self.model):
                if key[0] != prefix:
                    continue
                sd = self.model.sagas[i]
                n = key[1] if key[1] is not None else 0
                cur = self.slots.sagas.get(key)
                taken = cur is not None and find_run(self.ctrl, cur) is not None
                if int(post[sd.var("mode", n)]) not in (IDLE, STUCK) and not taken and (
                        int(pre[sd.var("mode", n)]) == IDLE or cur is not None):
                    self.slots.sagas[key] = sid
                    self._relocate(sid, self.nexus_of[key])
                    break
            self._settle()
        for (prefix, slot), sid in self.slots.sagas.items():
            if slot is None or prefix not in ("st", "mg", "up", "uc"):
                continue
            found = find_run(self.ctrl, sid)
            if found is None or int(post[f"{prefix}_mode.{slot}"]) == IDLE:
                continue
            out = found[1].outputs
            if prefix == "st" and "propolis_id" in out:
                self.slots.vmms.bind(int(post[f"st_vmm.{slot}"]), out["propolis_id"])
            elif prefix == "mg":
                if "dst_propolis_id" in out:
                    self.slots.vmms.bind(int(post[f"mg_vmm.{slot}"]), out["dst_propolis_id"])
                if "migrate_id" in out:
                    self.slots.migrations.bind(int(post[f"mg_mig.{slot}"]), out["migrate_id"])
            elif prefix in ("up", "uc") and "saga_instance_lock_id" in out:
                self.slots.locks.bind(int(post[f"{prefix}_lid.{slot}"]), out["saga_instance_lock_id"])


def replay_trace(trace: LoadedTrace, path: str = "<trace>", db_url: str = "sqlite://",
                 pg_schema: str | None = None,
                 impl_mutants: tuple[str, ...] | None = None,
                 history: Path | None = None) -> ReplayResult:
    """Replay one trace on a fresh implementation; with `history`, the implementation also
    records its own database-level history of the replay there (impl/history.py)."""
    return Replayer(trace, str(Path(path)) if path != "<trace>" else path, db_url, pg_schema,
                    impl_mutants, history).run()
