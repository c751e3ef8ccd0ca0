"""A start saga whose registration meets an unhealthy sled (SPEC §4.2 node 8, §4.10).

On the baseline, `instance_ensure_registered` calls `mark_instance_failed` on such an error,
then the node fails and the saga unwinds. In the model this is the node's `unhealthy` outcome
(lifecycle-model/5). In the implementation it is `instance_start._handle_sled_error`, which
replay now reaches by making the sled unreachable for that step. The pinned trace (11 steps)
runs create, the start saga to ENSURE_REGISTERED, the unhealthy outcome and the four undos."""

from __future__ import annotations

from pathlib import Path

from conformance.replay import replay_trace
from model.actions import model_for
from model.state import NONE, Config
from model.trace import load_itf
from model.vocab import InstanceState

TRACE = Path(__file__).parent / "traces" / "start-register-unhealthy.itf.json"



def test_only_the_baseline_has_the_unhealthy_outcome() -> None:
    def labels(revision: str) -> list[str]:
        return [a.label for a in model_for(Config(revision=revision)).actions
                if a.name == "instance-start.ENSURE_REGISTERED"
                and a.arg("outcome") == "unhealthy"]

    assert labels("baseline") == [
        "instance-start.ENSURE_REGISTERED(saga=0, outcome=unhealthy)",
        "instance-start.ENSURE_REGISTERED(saga=1, outcome=unhealthy)"]
    assert labels("rfd486") == []  # Δ #6455: only a VMM reported gone is marked failed


def test_model_marks_the_instance_failed_and_unwinds() -> None:
    t = load_itf(TRACE)
    i = t.labels.index("instance-start.ENSURE_REGISTERED(saga=0, outcome=unhealthy)")
    before, after = t.states[i], t.states[i + 1]
    assert before["i_active"] == 0 and before["i_state"] != InstanceState.FAILED
    assert after["i_state"] == InstanceState.FAILED
    assert after["i_active"] == NONE
    assert after["i_gen"] == before["i_gen"] + 1
    assert after["sa_state.0"] == before["sa_state.0"]  # the sled registered nothing
    rest = t.labels[i + 1:]
    assert rest == [f"instance-start.{n}.undo(saga=0, outcome=undo)" for n in
                    ("DPD_ENSURE", "MARK_AS_STARTING", "CREATE_VMM_RECORD", "ALLOC_SERVER")]
    end = t.states[-1]
    assert end["i_state"] == InstanceState.FAILED  # MARK_AS_STARTING's undo found the gen moved


def test_implementation_does_the_same() -> None:
    res = replay_trace(load_itf(TRACE), str(TRACE))
    assert res.mismatch is None, res.mismatch.render()
    assert res.steps == 11
