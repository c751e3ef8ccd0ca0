"""impl's own simulated sled-agents, run in lockstep with the model's sleds during replay.

The replay answers Nexus from the model (`conformance/sled.py`): a reply carries exactly the
news the model applies in the step. Underneath that oracle, `SimSleds` runs the
implementation's simulated sled-agents (`impl/sled_agent/`) through the same trace and checks
them against the model's sled variables (`sa_*`):

* **Injection.** Before every step the simulated sleds are loaded with the model's sled state
  of the step's pre-state (`load`): each VMM slot bound to an implementation id becomes a
  `SimVmm` on the sled it was registered on, with the Propolis state, generation and
  migration sides the model's sled-agent holds; a VMM the model's sled has seen end
  (Destroyed, Failed, Gone) is in the sled's `gone` set.
* **Nexus calls.** Every call Nexus makes (register, unregister, put_state, migrate,
  get_state) also runs on the simulated sled; its outcome must agree with the model's
  (`agree`): both answer or both refuse, with the same kind of error, and an answer carries
  the model's VMM state and migration-side states. Stop and reboot only record the request
  on a simulated sled; its next Propolis transition (`advance`, the one the model's answer
  already shows) is taken before the answer is compared.
* **Sled events.** The model's spontaneous sled steps are taken by the simulated sled with
  the model's choice injected (`event`): `vmm_transition(to=RUNNING)` is `advance`,
  `to=FAILED` is `fail`, `to=GONE` is `vanish`, `to=DESTROYED` is the guest halting
  (`advance` with a stop requested, until the VMM is torn down); the migration steps are
  `advance` of the side(s) with the outcome the model picked.
* **After the step** (`check`) every bound VMM's coarse state on the simulated sleds (VMM
  state, or ended/unknown, and its migration sides' states) must equal the model's.

Generations are not compared outside register: the simulated Propolis reports more
intermediate states than the model's sled (Stopped between Stopping and Destroyed, a
migration source that shows Migrating), and each of them costs a generation. A source VMM the
simulated sled shows as Migrating (it has an outgoing migration) stands for the model's
Running or Rebooting. Disagreements are collected in `divergences`; the replayer reports the
first one of a step as a mismatch.

Seven differences between the two sleds' designs are not mismatches; each is counted in
`known` under its name (the replay result carries the counts):

* `ended-vmm-forgotten`: the model's sled keeps answering for a VMM that ended (Destroyed,
  Failed) with its last state until the VMM is Gone; the simulated sled-agent, like omicron's,
  answers a state query with it only until its final report has left the outbox (taken by
  Nexus, or lost), and 404 after that, and 404 to every other call at once.
* `request-while-migrating-out`: a stop or reboot of a migration source shows Stopping or
  Rebooting at once in the model; the simulated Propolis lets the outgoing migration end
  first (then it is destroyed if the migration completed, or resumes Running if it failed,
  the request still pending).
* `migration-step-due-first`: the model's sled moves a VMM to Running (booted, or a reboot
  ended) while the simulated Propolis has a migration step due first (or, a source that
  handed its guest over, its end); the simulated sled does not take the step and the step
  check leaves that VMM out.
* `handed-over-source-destroyed`: after its outgoing migration completed, a source goes on
  in the model (a reboot ends Running); the simulated one is destroyed at its next step.
* `migrate-from-dead-source`: asked to migrate in from a source that is no longer Running,
  the model's sled refuses (404) and keeps the target; the simulated target fails the
  migration and is torn down (the step check then leaves that VMM out).
* `run-while-not-runnable`: asked to run a VMM that is Stopping or waiting as a migration
  target, the model's sled refuses (ENSURE_RUNNING fails); the simulated sled-agent records
  the request and answers.
* `migration-needs-live-peer`: a migration side completes in the model once the other side
  has not failed, even if the other VMM is gone; the simulated side completes only while the
  peer VMM is still on its sled (otherwise a source stays up, a target is torn down).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from impl.controller import Controller
from impl.errors import SledAgentError, SledNoSuchInstance
from impl.sled_agent.fleet import Fleet
from impl.sled_agent.report import PROPOLIS_TO_VMM, Propolis, SledVmmState
from impl.sled_agent.vmm import MigrationSide, SimVmm
from model.state import NONE
from model.step import State
from model.vocab import MigrationState, VmmState

from .slots import SlotMap

T = TypeVar("T")
ENDED = (VmmState.DESTROYED, VmmState.FAILED, VmmState.GONE)
PROPOLIS_OF: dict[VmmState, tuple[Propolis, str | None]] = {
    # model sled state -> (Propolis state, the request a simulated sled would hold)
    VmmState.STARTING: (Propolis.STARTING, "run"),
    VmmState.RUNNING: (Propolis.RUNNING, "run"),
    VmmState.STOPPING: (Propolis.STOPPING, "stop"),
    VmmState.REBOOTING: (Propolis.REBOOTING, "run"),
    VmmState.MIGRATING: (Propolis.MIGRATING, None),
}
SOURCE_MIGRATING = (VmmState.RUNNING, VmmState.REBOOTING)

# a VMM's coarse sled view: state name ("ended" / "unknown" for none), migration-in and
# migration-out side states (None: no side)
View = tuple[str, str | None, str | None]
Outcome = tuple[SledVmmState | None, SledAgentError | None]


def _side(side: MigrationSide | None) -> str | None:
    return None if side is None else side.state.name


@dataclass
class SimSleds:
    """The implementation's sleds of one replay, kept in lockstep with the model's."""

    ctrl: Controller
    slots: SlotMap
    instance_id: str = ""
    home: dict[str, str] = field(default_factory=dict)  # VMM id -> sled id
    divergences: list[str] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)  # differences `KNOWN` explains
    compared: Counter[str] = field(default_factory=Counter)  # calls, events, step checks
    # VMMs whose call in this step met a known difference: the step check leaves them out
    excused: set[str] = field(default_factory=set)

    @property
    def fleet(self) -> Fleet:
        return self.ctrl.fleet

    # ------------------------------------------------------------------ injection
    def sled_of(self, vmm_id: str) -> str | None:
        if vmm_id not in self.home:
            rec = self.ctrl.datastore.vmm_fetch(vmm_id)
            if rec is None:
                return None
            self.home[vmm_id] = rec.sled_id
        return self.home[vmm_id]

    def _mig_side(self, s: State, m: int, side: str) -> MigrationSide | None:
        got = self.slots.sled_migration_side(s, m, side)
        return None if got is None else MigrationSide(*got)

    def _peer_completed(self, s: State, m: int, peer: str) -> bool:
        """The other side (`peer`: "src" or "tgt") of migration slot `m` completed, as the
        model's sled sees it: the hand-over happened."""
        got = self.slots.sled_migration_side(s, m, peer)
        return got is not None and got[1] == MigrationState.COMPLETED

    def _peer_id(self, s: State, m: int, which: str) -> str | None:
        if m == NONE:
            return None
        k = int(s[f"m_{which}.{m}"])
        return None if k == NONE else self.slots.vmms.id(k)

    def load(self, s: State, vmm_slots: int) -> None:
        """Put the model's sled state `s` into the simulated sleds."""
        for sled in self.fleet.sleds.values():
            sled.vmms.clear()
            sled.gone.clear()
            sled.ending.clear()
            sled.unhealthy = False
        self.fleet.migration_outcome.clear()
        self.fleet.outbox.clear()  # the model's report in flight (`rb_*`) is the one queued
        self.excused.clear()
        for k in range(vmm_slots):
            vid = self.slots.vmms.id(k)
            st = VmmState(int(s[f"sa_state.{k}"]))
            if vid is None or st == VmmState.ABSENT:
                continue
            sid = self.sled_of(vid)
            if sid is None:
                continue
            sled = self.fleet.sleds[sid]
            if st in ENDED:
                sled.gone.add(vid)
                continue
            propolis, requested = PROPOLIS_OF[st]
            m_in, m_out = int(s[f"sa_min.{k}"]), int(s[f"sa_mout.{k}"])
            sled.vmms[vid] = SimVmm(
                vid, self.instance_id, sid, propolis, int(s[f"sa_gen.{k}"]), requested,
                migration_in=self._mig_side(s, m_in, "tgt"),
                migration_out=self._mig_side(s, m_out, "src"),
                migration_source=self._peer_id(s, m_in, "src"),
                migration_target=self._peer_id(s, m_out, "tgt"),
                handed_over=self._peer_completed(s, m_in, "src")
                or self._peer_completed(s, m_out, "tgt"),
            )

    # ------------------------------------------------------------------ views
    def sim_view(self, vmm_id: str) -> View:
        vmm = self.fleet.find_vmm(vmm_id)
        if vmm is None:
            ended = any(vmm_id in s.gone for s in self.fleet.sleds.values())
            return ("ended" if ended else "unknown", None, None)
        return (PROPOLIS_TO_VMM[vmm.propolis].name, _side(vmm.migration_in),
                _side(vmm.migration_out))

    def model_view(self, s: State, k: int) -> View:
        st = VmmState(int(s[f"sa_state.{k}"]))
        if st in ENDED:
            return ("ended", None, None)
        if st == VmmState.ABSENT:
            return ("unknown", None, None)
        m_in = self._mig_side(s, int(s[f"sa_min.{k}"]), "tgt")
        m_out = self._mig_side(s, int(s[f"sa_mout.{k}"]), "src")
        return (st.name, _side(m_in), _side(m_out))

    @staticmethod
    def same(model: View, sim: View) -> bool:
        if model == sim:
            return True
        # a migration source: the simulated Propolis shows Migrating, the model's sled keeps
        # the state the VMM had
        return (sim[0] == VmmState.MIGRATING.name and sim[2] is not None
                and model[0] in (v.name for v in SOURCE_MIGRATING) and model[1:] == sim[1:])

    def explained(self, model: View, sim: View) -> bool:
        """A difference of the two sleds' designs (docs/conformance.md), counted in `known`."""
        for name, applies in KNOWN.items():
            if applies(model, sim):
                self.known[name] += 1
                return True
        return False

    def check(self, what: str, s: State, vmm_slots: int) -> None:
        """After a step: every bound VMM is in the model's coarse state on the simulated sleds."""
        self.compared["step check"] += 1
        for k in range(vmm_slots):
            vid = self.slots.vmms.id(k)
            if vid is None or vid in self.excused or self.sled_of(vid) is None:
                continue
            want, got = self.model_view(s, k), self.sim_view(vid)
            if not self.same(want, got) and not self.explained(want, got):
                self.divergences.append(f"{what}: simulated sled has VMM slot {k} as {got}, "
                                        f"the model's sled as {want}")

    # ------------------------------------------------------------------ Nexus calls
    @staticmethod
    def run(call: Callable[[], T]) -> tuple[T | None, SledAgentError | None]:
        try:
            return call(), None
        except SledAgentError as e:
            return None, e

    def agree(self, call: str, vmm_id: str, model: Outcome, sim: Outcome, *,
              gen: bool = False, vmm: View | None = None, replies: bool = True) -> None:
        """The simulated sled's outcome of a call agrees with the model's: both answer or both
        refuse alike, and (with `replies`) the answers carry the same states (with `gen`, the
        same VMM generation). `vmm` is the model sled's view of the VMM after the step (None:
        not bound to a slot)."""
        self.compared[f"call {call}"] += 1
        what = f"{call} {vmm_id}"
        (m_rep, m_err), (s_rep, s_err) = model, sim
        seen = vmm if vmm is not None or m_rep is None else _view(m_rep)
        if m_err is None and isinstance(s_err, SledNoSuchInstance) and seen is not None and (
                self.explained(seen, ("unknown", None, None))):
            self.excused.add(vmm_id)
            return
        if (call == "migrate" and isinstance(m_err, SledNoSuchInstance) and s_rep is not None
                and _view(s_rep) == (VmmState.DESTROYED.name, MigrationState.FAILED.name, None)):
            # the source is no longer Running: the model's sled refuses to begin, the
            # simulated target fails the migration and is torn down (`instance_migrate`)
            self.known["migrate-from-dead-source"] += 1
            self.excused.add(vmm_id)
            return
        if (call == "put_state:run" and isinstance(m_err, SledNoSuchInstance) and s_err is None
                and vmm is not None and vmm[0] in (VmmState.STOPPING.name,
                                                   VmmState.MIGRATING.name)):
            # the model's sled runs only a Starting, Running or Rebooting VMM (ENSURE_RUNNING
            # fails otherwise); the simulated one takes the request for any VMM it has
            self.known["run-while-not-runnable"] += 1
            return
        if (m_err is None) != (s_err is None) or (
                m_err is not None and type(m_err) is not type(s_err)):
            self.divergences.append(
                f"{what}: the model's sled {_outcome(model)}, the simulated sled {_outcome(sim)}")
            return
        if m_rep is None or s_rep is None or not replies:
            return
        want, got = _reply_view(m_rep, gen), _reply_view(s_rep, gen)
        views_agree = self.same(_view(m_rep), _view(s_rep)) or self.explained(
            _view(m_rep), _view(s_rep))
        gens_agree = not gen or want[3:] == got[3:]
        if not views_agree or not gens_agree:
            self.divergences.append(
                f"{what}: the model's sled answers {want}, the simulated sled {got}")

    # ------------------------------------------------------------------ sled events
    def event(self, name: str, pick: dict[str, str], pre: State, post: State,
              vmm_slots: int) -> None:
        """Take the model's spontaneous sled step `name` (with its picks) on the simulated
        sleds, then compare."""
        self.load(pre, vmm_slots)
        self.compared[f"event {name.removeprefix('sled-agent.')}"] += 1
        ctrl = self.ctrl
        if name == "sled-agent.vmm_transition":
            k = int(pick["vmm"])
            vid = self.slots.vmms.id(k)
            if vid is None:
                return
            to = pick["to"]
            vmm = self.fleet.find_vmm(vid)
            due = None if vmm is None else self.fleet.sleds[vmm.sled_id]._next(vmm)
            if to == VmmState.RUNNING.name and due in ("migrate_in", "migrate_out", "destroy"):
                # the simulated Propolis has a migration step (or, a handed-over source, its
                # end) due first; the model's sled boots or ends a reboot alongside it
                self.known["migration-step-due-first"] += 1
                self.excused.add(vid)
            elif to == VmmState.RUNNING.name:
                ctrl.vmm_advance(vid)
            elif to == VmmState.FAILED.name:
                ctrl.vmm_fail(vid)
            elif to == VmmState.GONE.name:
                ctrl.vmm_vanish(vid)
            elif to == VmmState.DESTROYED.name:
                self._halt(vid)
            self._check_report(vid, k, post)
        else:
            m = int(pick["migration"])
            mid = self.slots.migrations.id(m)
            if mid is None:
                return
            tgt, src = self._peer_id(pre, m, "tgt"), self._peer_id(pre, m, "src")
            if name == "sled-agent.migration_target_completes" and tgt is not None:
                ctrl.vmm_advance(tgt, migration_ok=True)
            elif name == "sled-agent.migration_source_completes" and src is not None:
                ctrl.vmm_advance(src, migration_ok=True)
            elif name == "sled-agent.migration_fails":
                for vid in (tgt, src):
                    vmm = self.fleet.find_vmm(vid) if vid is not None else None
                    if vmm is not None and any(
                            side is not None and side.migration_id == mid
                            and side.state == MigrationState.IN_PROGRESS
                            for side in (vmm.migration_in, vmm.migration_out)):
                        ctrl.vmm_advance(vmm.vmm_id, migration_ok=False)
                    elif vmm is not None and vid == tgt:
                        # a target the migration never reached is torn down with it
                        ctrl.vmm_destroy(vmm.vmm_id)
        self.check(f"{name}({', '.join(f'{k}={v}' for k, v in pick.items())})", post,
                   vmm_slots)

    def _halt(self, vmm_id: str) -> None:
        """The VMM ends Destroyed: a stopping one finishes stopping (Stopped, then
        Destroyed); any other Propolis exits at once."""
        vmm = self.fleet.find_vmm(vmm_id)
        if vmm is None:
            return
        if vmm.propolis != Propolis.STOPPING:
            self.ctrl.vmm_destroy(vmm_id)
            return
        while self.ctrl.vmm_advance(vmm_id) is not None and self.fleet.find_vmm(vmm_id):
            pass

    def _check_report(self, vmm_id: str, k: int, post: State) -> None:
        """A VMM that ended visibly reported its end state (a vanished one reports nothing)."""
        st = VmmState(int(post[f"sa_state.{k}"]))
        if st not in (VmmState.DESTROYED, VmmState.FAILED):
            return
        last = next((r for _, _, r in reversed(self.fleet.history) if r.propolis_id == vmm_id),
                    None)
        if last is None or last.vmm_state.state != st:
            got = None if last is None else last.vmm_state.state.name
            self.divergences.append(f"VMM slot {k} ended {st.name} in the model, the simulated "
                                    f"sled last reported {got}")


def _view(rep: SledVmmState) -> View:
    return (rep.vmm_state.state.name,
            None if rep.migration_in is None else rep.migration_in.state.name,
            None if rep.migration_out is None else rep.migration_out.state.name)


def _ended_forgotten(model: View, sim: View) -> bool:
    """The model's sled answers for a VMM that ended (Destroyed, Failed) with its last state
    until it is Gone; the simulated sled-agent, like omicron's, forgets a VMM once its final
    report has left the outbox, and answers 404."""
    return model[0] in ("ended", VmmState.DESTROYED.name, VmmState.FAILED.name) and (
        sim[0] == "unknown")


def _request_while_migrating_out(model: View, sim: View) -> bool:
    """A stop or reboot of a migration source: the model's sled shows Stopping or Rebooting
    at once; the simulated Propolis lets the outgoing migration end first, and then is
    destroyed if it completed or resumes Running if it failed (`SimSledAgent._next`,
    `advance`), the request still pending."""
    return (model[0] in (VmmState.STOPPING.name, VmmState.REBOOTING.name)
            and model[2] in (MigrationState.IN_PROGRESS.name, MigrationState.COMPLETED.name,
                             MigrationState.FAILED.name)
            and sim[0] in (VmmState.RUNNING.name, VmmState.REBOOTING.name,
                           VmmState.MIGRATING.name) and sim[1:] == model[1:])


def _needs_live_peer(model: View, sim: View) -> bool:
    """A migration side completes in the model once the other side has not failed (its VMM
    may be gone); the simulated side completes only while the peer VMM is still on its sled
    or after the peer completed its own side (the hand-over), and fails otherwise
    (`SimSledAgent.advance`): a source stays up, a target is torn down. So they differ only
    when the peer vanished mid-migration."""
    source = (model[2] == MigrationState.COMPLETED.name
              and sim[2] == MigrationState.FAILED.name and sim[:2] == model[:2])
    target = model[1] == MigrationState.COMPLETED.name and sim[0] == "ended"
    return source or target


def _handed_over_source_destroyed(model: View, sim: View) -> bool:
    """A migration source whose outgoing migration completed goes on in the model (a
    reboot's end, Running); the simulated one is destroyed at its next transition."""
    return (model[2] == MigrationState.COMPLETED.name and model[0] in (
        v.name for v in PROPOLIS_OF) and sim[0] == "ended")


KNOWN: dict[str, Callable[[View, View], bool]] = {
    "handed-over-source-destroyed": _handed_over_source_destroyed,
    "ended-vmm-forgotten": _ended_forgotten,
    "request-while-migrating-out": _request_while_migrating_out,
    "migration-needs-live-peer": _needs_live_peer,
}


def _reply_view(rep: SledVmmState, gen: bool) -> tuple[object, ...]:
    base: tuple[object, ...] = (
        rep.vmm_state.state.name,
        None if rep.migration_in is None else rep.migration_in.state.name,
        None if rep.migration_out is None else rep.migration_out.state.name)
    return base + ((rep.vmm_state.gen,) if gen else ())


def _outcome(o: Outcome) -> str:
    rep, err = o
    if err is not None:
        return f"refuses ({type(err).__name__})"
    return "answers nothing" if rep is None else f"answers {_reply_view(rep, True)}"
