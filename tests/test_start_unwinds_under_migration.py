"""An observation, not a registered finding (docs/findings.md, "Observed"): a start saga that
unwinds after a migrate saga moved the instance's generation.

The VMM reports Running before the start saga's ENSURE_RUNNING has answered (the model lets a
registered VMM boot on its own: ENSURE_RUNNING writes nothing). The user migrates, and
SET_MIGRATION_IDS moves the generation. Then ENSURE_RUNNING fails and the saga unwinds:
ENSURE_REGISTERED's undo destroys the VMM on its sled, MARK_AS_STARTING's undo finds the
generation moved and leaves the VMM linked, and ALLOC_SERVER's undo releases its reservation.
On the baseline the VMM row is still Running (the SagaUnwound write is generation-guarded,
and the Running report moved the VMM's generation): an active Running VMM with no
reservation. rfd486 writes SagaUnwound unconditionally, so the same path ends in
MIGRATING/SAGA_UNWOUND with every invariant holding.
"""

from __future__ import annotations

from conformance.coverage import pair_of
from conformance.scenarios import START_UNWINDS_UNDER_MIGRATION
from model.actions import model_for
from model.bmc import eval_concrete
from model.invariants import INVARIANTS
from model.state import Config
from model.step import apply

PATH = START_UNWINDS_UNDER_MIGRATION


def _run(revision: str) -> list[tuple[str, list[str]]]:
    model = model_for(Config(revision=revision))
    s = model.layout.fresh_state()
    out = []
    for lab in PATH:
        t = apply(model, model.action_index(lab), s)
        assert t is not None, lab
        s = t
        out.append((pair_of(model, s), [i for i, inv in INVARIANTS.items()
                                        if inv.kind != "step"
                                        and not eval_concrete(inv, model, None, None, s)]))
    return out


def test_baseline_releases_the_reservation_of_its_running_active_vmm() -> None:
    steps = _run("baseline")
    assert len(steps) == 22
    assert all(not bad for _, bad in steps[:-1])
    assert steps[-1] == ("pair:MIGRATING/RUNNING", ["active_vms_have_resources"])


def test_rfd486_marks_the_vmm_saga_unwound_instead() -> None:
    """The same path also reaches the pair MIGRATING/SAGA_UNWOUND, which generation leaves
    undecided on rfd486: it is reachable."""
    steps = _run("rfd486")
    assert all(not bad for _, bad in steps)
    assert steps[-1][0] == "pair:MIGRATING/SAGA_UNWOUND"
