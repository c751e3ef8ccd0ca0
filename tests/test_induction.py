"""Unbounded checking: the invariants Houdini proves for every depth are pinned."""

from __future__ import annotations

import pytest

from model.induction import houdini
from model.state import Config

PROVED = ["updater_lock_not_stolen", "update_never_drives_sleds", "sled_agents_own_vmm_state",
          "migration_id_means_migrating", "never_charged_twice",
          "never_released_when_not_charged", "counter_never_negative", "counter_matches_rows"]


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_houdini_proves_the_pinned_set(revision: str) -> None:
    r = houdini(Config(revision=revision))
    assert r.proved == PROVED
    assert set(r.proved).isdisjoint(r.not_inductive)


def test_a_mutant_breaks_an_inductive_proof() -> None:
    # with the release guard gone, the counters are no longer provably tied to the row
    r = houdini(Config(revision="rfd486", mutants=("release-not-idempotent",)))
    assert "counter_matches_rows" not in r.proved
    assert "never_released_when_not_charged" not in r.proved


# With the conformance suite's stored lemmas (proven inductive on their own) assumed in every
# pre-state, three more invariants are proven for every depth.
PROVED_WITH_SUPPORT = ["state_vmm_iff_active", "saga_unwound_never_visible",
                       "stopped_means_startable", *PROVED]


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_stored_lemmas_strengthen_the_induction(revision: str) -> None:
    from conformance.goals import support_for
    from model.invariants import INVARIANTS

    cfg = Config(revision=revision)
    r = houdini(cfg, support=support_for(cfg))
    assert sorted(r.proved) == sorted(PROVED_WITH_SUPPORT)
    assert set(r.proved).isdisjoint(r.not_inductive)
    order = list(INVARIANTS)
    assert r.proved == sorted(r.proved, key=order.index)
