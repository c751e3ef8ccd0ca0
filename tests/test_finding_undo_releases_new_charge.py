"""Finding F5 (docs/findings.md): an unwinding start saga's undo of ADD_VIRTUAL_RESOURCES
releases the charge of a newer start, on both revisions (SPEC §4.2 node 9, §1.4, §7 R9).

The interleaving came from the PostgreSQL stress run (`active VMM RUNNING but no charge`);
the pinned traces drive it on the model from the checker's `starting` seed (7 steps) plus 21
steps: a stop tears start saga 0's VMM down, an update saga releases the charge and unlinks
the VMM, the user starts again (saga 1 charges and runs VMM 1), then saga 0's ENSURE_RUNNING
fails and its first undo deletes the charge by instance id, which is saga 1's charge. Too
deep for the default bounded check (depth 8 from each default seed); from the opt-in seed
`start-outlived` (the first 17 steps of the trace) `lifecycle verify --seed start-outlived`
finds it at depth 8. The model's invariant flags the trace's last state, and the
implementation follows the same 28 steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.replay import replay_trace
from model.actions import model_for
from model.bmc import eval_concrete
from model.findings import FINDINGS
from model.invariants import INVARIANTS, REGISTRY
from model.seeds import seed_states
from model.state import Config
from model.trace import load_itf

TRACES = Path(__file__).parent / "traces"


def _trace(revision: str) -> Path:
    return TRACES / f"finding-start-undo-releases-new-charge-{revision}.itf.json"


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_model_flags_the_last_step_only(revision: str) -> None:
    t = load_itf(_trace(revision))
    model = model_for(t.cfg)
    assert t.cfg.revision == revision and len(t.labels) == 28
    assert t.labels[-2:] == ["instance-start.ENSURE_RUNNING(saga=0, outcome=fail)",
                             "instance-start.ADD_VIRTUAL_RESOURCES.undo(saga=0, outcome=undo)"]
    violated = []
    for n in range(1, len(t.states)):
        act = model.action_index(t.labels[n - 1])
        bad = [inv.id for inv in REGISTRY
               if not eval_concrete(inv, model, t.states[n - 1], act, t.states[n])]
        violated.append(bad)
    assert violated[:-1] == [[]] * 27
    assert violated[-1] == ["active_vms_have_resources"]
    before, after = t.states[-2], t.states[-1]
    assert before["prov_row"] and not after["prov_row"]  # saga 1's charge, released by saga 0
    assert after["i_active"] == 1  # VMM 1, started by saga 1, is still the active VMM


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_implementation_takes_the_same_steps(revision: str) -> None:
    """Every step agrees (the trace names the finding's invariant, so the settle checks
    afterwards are excused, as for every finding trace)."""
    res = replay_trace(load_itf(_trace(revision)), str(_trace(revision)))
    assert res.mismatch is None and res.steps == 28


def test_the_checker_finds_it_from_its_seed() -> None:
    """From the opt-in seed `start-outlived` the checker itself finds the violation at depth
    8 (the deep findings test pins it per revision); the seed state satisfies the invariant."""
    f5 = [f for f in FINDINGS if f.id == "F5"]
    assert [(f.revision, f.seed, f.invariants) for f in f5] == [
        ("baseline", "start-outlived", ("active_vms_have_resources",)),
        ("rfd486", "start-outlived", ("active_vms_have_resources",))]
    for rev in ("baseline", "rfd486"):
        model = model_for(Config(revision=rev))
        (seed,) = seed_states(model, ["start-outlived"])
        assert eval_concrete(INVARIANTS["active_vms_have_resources"], model, None, None,
                             seed.state)
        # the pinned trace passes through the seed state
        t = load_itf(_trace(rev))
        assert t.states[len(seed.prefix)] == seed.state
