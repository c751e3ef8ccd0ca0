"""The replay's sled-agents: environment whose answers follow the model's trace.

The sled-agents are the environment of the system under test (Nexus and its database), so
during replay they do what the trace says they did. Before each step the replayer tells the
oracle the model's states before and after the step; every Nexus-to-sled call made during the
step is answered from them, by one rule: **a reply carries exactly the news the model applies
to the database in that step.**

* `instance_register`, `instance_put_state(stop|reboot)` and `instance_get_state` return
  the sled's state after the step (the model applies it through
  `vmm_and_migration_update_runtime`); a VMM the sled does not know (model `GONE` or never
  registered) is a 404.
* `instance_put_state(run)` (start node ENSURE_RUNNING), `instance_migrate` (migrate node
  INSTANCE_MIGRATE) and unregister are not applied by the model: their replies carry no news
  (the VMM's database state and generation, which no generation check accepts; unregister
  returns nothing). They fail exactly when the model's node fails.
* A sled marked unhealthy for the step (`user.instance_stop(sled=unhealthy)`) raises
  `SledUnavailable`.

Spontaneous sled events (`sled-agent.vmm_transition`, `migration_*`) need no call at all: the
oracle's next "after" state already contains them. Reports are built by the replayer from the
model's in-flight report (`rb_*`), not taken from the simulated outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from impl.datastore.records import MigrationRuntime, VmmRuntime, now
from impl.errors import SledNoSuchInstance, SledUnavailable
from impl.sled_agent.fleet import Fleet
from impl.sled_agent.report import SledVmmState
from impl.sled_agent.sled_agent import SimSledAgent
from model.state import NONE
from model.step import State
from model.vocab import MigrationState, VmmState

from .sim_sled import SimSleds
from .slots import SlotMap

RUN_OK = (VmmState.STARTING, VmmState.RUNNING, VmmState.REBOOTING)


@dataclass
class SledOracle:
    """The model's view of the sleds for the step being replayed."""

    slots: SlotMap
    instance_id: str = ""
    pre: State = field(default_factory=dict)
    post: State = field(default_factory=dict)
    unhealthy: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)
    sims: SimSleds | None = None  # impl's simulated sleds, run underneath (sim_sled.py)
    free: bool = False  # the trace is over: the simulated sleds answer alone

    def slot(self, vmm_id: str) -> int:
        k = self.slots.vmms.slot(vmm_id, NONE)
        if k is None or k == NONE:
            raise SledNoSuchInstance(f"replay: VMM {vmm_id} is not bound to a model slot")
        return k

    def side(self, s: State, m: int, side: str) -> MigrationRuntime | None:
        got = self.slots.sled_migration_side(s, m, side)
        return None if got is None else MigrationRuntime(*got, now())

    def sled_report(self, vmm_id: str, s: State) -> SledVmmState:
        """What the sled knows about the VMM in model state `s`; 404 when it knows nothing."""
        k = self.slot(vmm_id)
        st = int(s[f"sa_state.{k}"])
        if st in (VmmState.ABSENT, VmmState.GONE):
            raise SledNoSuchInstance(f"NO_SUCH_INSTANCE: {vmm_id} (model sled state {VmmState(st).name})")
        return SledVmmState(
            self.instance_id,
            vmm_id,
            VmmRuntime(VmmState(st), int(s[f"sa_gen.{k}"]), now()),
            migration_in=self.side(s, int(s[f"sa_min.{k}"]), "tgt"),
            migration_out=self.side(s, int(s[f"sa_mout.{k}"]), "src"),
        )

    def no_news(self, vmm_id: str) -> SledVmmState:
        """A reply the database already knows: the VMM's own row state and generation."""
        k = self.slot(vmm_id)
        st = int(self.post[f"v_state.{k}"])
        state = VmmState(st) if st != VmmState.ABSENT else VmmState.STARTING
        return SledVmmState(self.instance_id, vmm_id, VmmRuntime(state, int(self.post[f"v_gen.{k}"]), now()))


class ReplaySled(SimSledAgent):
    """A sled-agent whose Nexus-facing calls are answered by the `SledOracle`.

    With the oracle's `sims` set, every call also runs on this sled as the implementation's
    simulated sled-agent (its own VMMs, loaded from the model before the step) and the two
    outcomes are compared (`conformance/sim_sled.py`); Nexus gets the oracle's answer.
    """

    def __init__(self, sled_id: str, ip: str, oracle: SledOracle, fleet: Fleet) -> None:
        super().__init__(sled_id, ip, fleet._emit, fleet.find_vmm, fleet._migration_ok)
        self.oracle = oracle

    def _answer(self, what: str, vmm_id: str, model: Callable[[], SledVmmState | None],
                sim: Callable[[], SledVmmState | None], replies: bool = True,
                gen: bool = False) -> SledVmmState | None:
        self.oracle.calls.append((what, vmm_id))
        if self.oracle.free:
            return sim()

        def from_model() -> SledVmmState | None:
            if self.oracle.unhealthy:
                raise SledUnavailable(f"sled {self.sled_id} is unreachable (replay: sled=unhealthy)")
            return model()

        m_rep, m_err = SimSleds.run(from_model)
        sims = self.oracle.sims
        if sims is not None:
            self.unhealthy = self.oracle.unhealthy
            try:
                s_rep, s_err = SimSleds.run(sim)
            finally:
                self.unhealthy = False
            k = self.oracle.slots.vmms.slot(vmm_id, NONE)
            view = None if k is None or k == NONE else sims.model_view(self.oracle.post, k)
            sims.agree(what, vmm_id, (m_rep, m_err), (s_rep, s_err), gen=gen, vmm=view,
                       replies=replies)
        if m_err is not None:
            raise m_err
        return m_rep

    def instance_register(
        self,
        vmm_id: str,
        instance_id: str,
        state: VmmState,
        gen: int,
        migration_in_id: str | None = None,
        source_vmm_id: str | None = None,
    ) -> SledVmmState:
        if self.oracle.sims is not None:
            self.oracle.sims.home.setdefault(vmm_id, self.sled_id)
        rep = self._answer(
            "register", vmm_id, lambda: self.oracle.sled_report(vmm_id, self.oracle.post),
            lambda: SimSledAgent.instance_register(self, vmm_id, instance_id, state, gen,
                                                   migration_in_id, source_vmm_id),
            gen=True)
        assert rep is not None
        return rep

    def instance_unregister(self, vmm_id: str) -> SledVmmState | None:
        return self._answer("unregister", vmm_id, lambda: None,
                            lambda: SimSledAgent.instance_unregister(self, vmm_id))

    def instance_unregister_by_instance(self, instance_id: str) -> SledVmmState | None:
        return self._answer(
            "unregister", instance_id, lambda: None,
            lambda: SimSledAgent.instance_unregister_by_instance(self, instance_id))

    def instance_put_state(self, vmm_id: str, target: str) -> SledVmmState:
        def model() -> SledVmmState:
            if target != "run":
                return self.oracle.sled_report(vmm_id, self.oracle.post)
            k = self.oracle.slot(vmm_id)
            if int(self.oracle.pre[f"sa_state.{k}"]) not in RUN_OK:
                raise SledNoSuchInstance(f"replay: VMM {vmm_id} is not alive on its sled")
            return self.oracle.no_news(vmm_id)

        def sim() -> SledVmmState:
            rep = SimSledAgent.instance_put_state(self, vmm_id, target)
            starts = {"stop": "stopping", "reboot": "rebooting"}.get(target)
            if starts is not None and self._next(self.vmms[vmm_id]) == starts:
                # the Propolis transition the request starts; the model's answer shows it
                rep = self.advance(vmm_id) or rep
            return rep

        # the answer to `run` carries no news in the model: only refusals are compared
        rep = self._answer(f"put_state:{target}", vmm_id, model, sim, replies=target != "run")
        assert rep is not None
        return rep

    def instance_migrate(self, vmm_id: str, source_vmm_id: str, migration_id: str) -> SledVmmState:
        def model() -> SledVmmState:
            m = self.oracle.slots.migrations.slot(migration_id, NONE)
            if m is None or m == NONE or int(self.oracle.post[f"sa_mtgt_st.{m}"]) == MigrationState.PENDING:
                raise SledNoSuchInstance(f"replay: migration {migration_id} cannot begin")
            return self.oracle.no_news(vmm_id)

        rep = self._answer("migrate", vmm_id, model,
                           lambda: SimSledAgent.instance_migrate(self, vmm_id, source_vmm_id,
                                                                 migration_id), replies=False)
        assert rep is not None
        return rep

    def instance_get_state(self, vmm_id: str) -> SledVmmState:
        rep = self._answer("get_state", vmm_id,
                           lambda: self.oracle.sled_report(vmm_id, self.oracle.post),
                           lambda: SimSledAgent.instance_get_state(self, vmm_id))
        assert rep is not None
        return rep


def install(fleet: Fleet, oracle: SledOracle) -> None:
    """Replace every simulated sled-agent of `fleet` by a `ReplaySled`."""
    for sid, sled in list(fleet.sleds.items()):
        fleet.sleds[sid] = ReplaySled(sid, sled.ip, oracle, fleet)
