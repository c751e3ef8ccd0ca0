"""A migration side completes once its peer has completed its own side (the hand-over), even
if the peer's VMM has ended since: the model's sled (`complete_source` needs only a target
side that has not failed) and the simulated sled-agent agree on it.

The trace (found by a conformance run, 2026-12-01) completes migration 1's target side, lets
the target VMM fail, asks the source to reboot and to stop, and then completes the source
side: the model's source shows Stopping with its side Completed. The simulated sled-agent
used to fail the source side because the target VMM was no longer on its sled, and to
resume the source as Running: a replay mismatch at step 25.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.replay import replay_trace
from impl.sled_agent.fleet import Fleet
from impl.sled_agent.report import Propolis
from impl.sled_agent.vmm import MigrationSide, SimVmm
from model.trace import load_itf
from model.vocab import MigrationState

TRACE = Path(__file__).parent / "traces" / "source-completes-after-target-failed.itf.json"


def test_the_trace_replays_without_a_mismatch() -> None:
    t = load_itf(TRACE)
    assert t.labels[19] == "sled-agent.migration_target_completes(migration=1)"
    assert t.labels[20] == "sled-agent.vmm_transition(vmm=2, to=FAILED)"
    assert t.labels[-1] == "sled-agent.migration_source_completes(migration=1)"
    res = replay_trace(t, str(TRACE))
    assert res.ok and res.steps == 25, res.mismatch and res.mismatch.render()


def test_without_the_hand_over_replay_reports_the_old_mismatch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated sled as it was: the source does not know that its target completed."""
    from conformance import sim_sled

    monkeypatch.setattr(sim_sled.SimSleds, "_peer_completed", lambda *a: False)
    res = replay_trace(load_itf(TRACE), str(TRACE))
    assert res.mismatch is not None and res.mismatch.step == 25
    assert "('RUNNING', None, 'FAILED')" in res.mismatch.render()


def _migrating_pair() -> tuple[Fleet, SimVmm, SimVmm]:
    fleet = Fleet(["s0", "s1"])
    src = SimVmm("v-src", "i", "s0", Propolis.MIGRATING, 3,
                 migration_out=MigrationSide("m", MigrationState.IN_PROGRESS, 2),
                 migration_target="v-dst")
    dst = SimVmm("v-dst", "i", "s1", Propolis.MIGRATING, 2,
                 migration_in=MigrationSide("m", MigrationState.IN_PROGRESS, 2),
                 migration_source="v-src")
    fleet.sleds["s0"].vmms[src.vmm_id] = src
    fleet.sleds["s1"].vmms[dst.vmm_id] = dst
    return fleet, src, dst


def test_a_source_completes_after_its_completed_target_failed() -> None:
    fleet, src, dst = _migrating_pair()
    fleet.advance(dst.vmm_id)  # the target completes its side: the hand-over
    fleet.sleds["s1"].fail(dst.vmm_id)
    assert fleet.find_vmm(dst.vmm_id) is None
    rep = fleet.advance(src.vmm_id)
    assert rep is not None and rep.migration_out is not None
    assert rep.migration_out.state == MigrationState.COMPLETED


def test_a_target_completes_after_its_completed_source_was_destroyed() -> None:
    fleet, src, dst = _migrating_pair()
    fleet.advance(src.vmm_id)  # the source completes its side first
    fleet.advance(src.vmm_id)  # and, handed over, is destroyed
    assert fleet.find_vmm(src.vmm_id) is None
    rep = fleet.advance(dst.vmm_id)
    assert rep is not None and rep.migration_in is not None
    assert rep.migration_in.state == MigrationState.COMPLETED
    assert dst.propolis == Propolis.RUNNING


def test_a_side_whose_peer_vanished_before_the_hand_over_fails() -> None:
    fleet, src, dst = _migrating_pair()
    fleet.sleds["s1"].vanish(dst.vmm_id)
    rep = fleet.advance(src.vmm_id)
    assert rep is not None and rep.migration_out is not None
    assert rep.migration_out.state == MigrationState.FAILED
    assert src.propolis == Propolis.RUNNING  # the source stays up
