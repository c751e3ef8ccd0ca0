"""Replay runs impl's own simulated sled-agents underneath the model's sled oracle, probes the
requests the model refuses, and lets the implementation settle after the last step
(`conformance/sim_sled.py`, `conformance/replay.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import impl.nexus.nexus as nexus_mod
from conformance.generate import walk_from_labels, write_walk
from conformance.replay import ReplayResult, replay_trace
from conformance.scenarios import SOURCE_COMPLETES_FIRST, START_NODES
from impl.errors import SledNoSuchInstance
from impl.nexus.nexus import Nexus
from impl.sled_agent.fleet import Fleet
from impl.sled_agent.report import SledVmmState
from impl.sled_agent.sled_agent import SimSledAgent
from model.state import Config
from model.trace import load_itf
from model.vocab import MigrationState, VmmState

RUN_THEN_DESTROYED: list[str] = [
    "instance-create.MOVE_TO_STOPPED(outcome=ok)",
    "user.instance_start(saga=0, vmm=0)",
    *[f"instance-start.{n}(saga=0, outcome=ok)" for n in START_NODES],
    "sled-agent.vmm_transition(vmm=0, to=RUNNING)",
    "sled-agent.deliver_report(vmm=0, keep=0, update=none)",
    "sled-agent.vmm_transition(vmm=0, to=DESTROYED)",
]


def _replay(tmp_path: Path, revision: str, labels: list[str]) -> ReplayResult:
    cfg = Config(revision=revision)
    p = write_walk(tmp_path / "walk.itf.json", cfg, walk_from_labels(cfg, labels), "t")
    return replay_trace(load_itf(p), str(p))


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_simulated_sleds_follow_a_migration(tmp_path: Path, revision: str) -> None:
    res = _replay(tmp_path, revision, SOURCE_COMPLETES_FIRST)
    assert res.ok, res.mismatch and res.mismatch.render()
    for what in ("call register", "call put_state:run", "call migrate",
                 "event vmm_transition", "event migration_source_completes", "step check"):
        assert res.sled_compared[what] > 0, (what, res.sled_compared)


def test_a_simulated_sled_that_ignores_the_source_is_caught(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`instance_migrate` that never tells the source sled: the step check sees the source
    without its outgoing migration."""

    def migrate_target_only(self: SimSledAgent, vmm_id: str, source_vmm_id: str,
                            migration_id: str) -> SledVmmState:
        vmm = self.vmms[vmm_id]
        assert vmm.migration_in is not None
        vmm.migration_in.state = MigrationState.IN_PROGRESS
        vmm.migration_in.gen += 1
        return vmm.report()

    monkeypatch.setattr(SimSledAgent, "instance_migrate", migrate_target_only)
    res = _replay(tmp_path, "rfd486", SOURCE_COMPLETES_FIRST)
    assert res.mismatch is not None
    assert "INSTANCE_MIGRATE" in res.mismatch.label
    assert "simulated sled-agent disagrees" in res.mismatch.note


def test_a_request_the_model_refuses_must_be_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def delete_anyway(self: Nexus, instance_id: str) -> str:
        return self.start_saga("instance-delete", {"instance_id": instance_id})

    monkeypatch.setattr(Nexus, "instance_delete", delete_anyway)
    res = _replay(tmp_path, "baseline", RUN_THEN_DESTROYED)
    assert res.mismatch is not None
    assert "accepted instance_delete, which the model refuses" in res.mismatch.note


def test_the_implementation_settles_after_the_trace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trace ends with the Destroyed report in flight: left alone, the implementation
    delivers it, runs the update saga and releases the reservation. Without update sagas
    (none started, the background updater idle) the stress invariants fail."""
    assert _replay(tmp_path, "rfd486", RUN_THEN_DESTROYED).ok

    orig = Nexus.start_saga

    def no_update_saga(self: Nexus, name: str, params: dict[str, Any]) -> str:
        if name == "start-instance-update":
            raise RuntimeError("test: no update sagas")
        return orig(self, name, params)

    monkeypatch.setattr(Nexus, "start_saga", no_update_saga)
    monkeypatch.setitem(nexus_mod.BACKGROUND_TASKS, "instance_updater", lambda _nx: [])
    res = _replay(tmp_path, "rfd486", RUN_THEN_DESTROYED)
    assert res.mismatch is not None
    assert res.mismatch.label == "settle after the trace (impl alone)"
    assert res.mismatch.step == len(RUN_THEN_DESTROYED)


def _same(a: SledVmmState | None, b: SledVmmState | None) -> bool:
    """The same report but for its timestamps."""
    def key(r: SledVmmState | None) -> object:
        if r is None:
            return None
        side = r.migration_in
        return (r.propolis_id, r.vmm_state.state, r.vmm_state.gen,
                None if side is None else (side.migration_id, side.state, side.gen))
    return key(a) == key(b)


def test_sled_destroy_world_event() -> None:
    """`destroy`: Propolis exits on its own; the VMM reports Destroyed at gen + 1, its
    unfinished migration fails, and the zone is gone (every call but a state query gets
    404). A state query answers the final state until Nexus takes the final report; then the
    sled forgets the VMM (omicron's sled-agent publishes before it forgets; #7282 was the
    simulated one forgetting first). A refused report (queued for a retry) forgets nothing."""
    fleet = Fleet(["sled-0"])
    sled = fleet.sled("sled-0")
    sled.instance_register("v0", "i0", VmmState.STARTING, 1, "m0", "src")
    rep = fleet.destroy("v0")
    assert rep is not None and rep.vmm_state.state == VmmState.DESTROYED
    assert rep.vmm_state.gen == 2
    assert rep.migration_in is not None and rep.migration_in.state == MigrationState.FAILED
    assert fleet.find_vmm("v0") is None and "v0" in sled.gone
    assert fleet.destroy("v0") is None
    with pytest.raises(SledNoSuchInstance):
        sled.instance_put_state("v0", "stop")
    assert _same(sled.instance_get_state("v0"), rep)
    (final,) = fleet.pending()

    def refuse(_rep: object) -> None:
        raise RuntimeError("nexus down")

    assert not fleet.deliver(final.report_id, refuse)  # refused: queued again, still known
    assert _same(sled.instance_get_state("v0"), rep)
    assert fleet.deliver(final.report_id, lambda _rep: None)
    with pytest.raises(SledNoSuchInstance):
        sled.instance_get_state("v0")


def test_a_lost_final_report_takes_the_last_state_with_it() -> None:
    """A report lost for good (`drop`: a live sled-agent retries until Nexus takes it, so
    only a restarted one loses it) also loses the ended VMM: 404 from then on."""
    fleet = Fleet(["sled-0"])
    sled = fleet.sled("sled-0")
    sled.instance_register("v0", "i0", VmmState.STARTING, 1)
    fleet.destroy("v0")
    (final,) = fleet.pending()
    assert not fleet.deliver(final.report_id, lambda _rep: None, "drop")
    with pytest.raises(SledNoSuchInstance):
        sled.instance_get_state("v0")


def test_the_api_view_is_the_models_effective_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import impl.datastore as datastore_mod
    from model.vocab import ExternalState

    monkeypatch.setattr(datastore_mod, "determine_effective_state",
                        lambda *_a: ExternalState.RUNNING)
    res = _replay(tmp_path, "baseline", RUN_THEN_DESTROYED)
    assert res.mismatch is not None and res.mismatch.step == 1
    assert "the API shows the instance RUNNING, the model's effective state is STOPPED" in (
        res.mismatch.note)
