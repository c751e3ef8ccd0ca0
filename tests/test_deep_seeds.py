"""The deep seed `remigrating` (model/seeds.py) and the two actions only it reaches.

`user.instance_stop/reboot(vmm=2, sled=ok, update=started)` were long left undecided by trace
generation and once argued unreachable (docs/conformance.md). They are reachable: VMM 2 is the
target of a second migration; the source's report makes it active, and its own report, still
carrying the target side's Completed, has not reached Nexus. Stopping VMM 2 then delivers that
side and starts an update saga.
"""

from __future__ import annotations

import pytest

from conformance.generate import DEEP_SEEDS
from conformance.goals import seed_paths
from model.actions import model_for
from model.seeds import OPT_IN_SEEDS, SEEDS, seed_states
from model.state import Config
from model.step import apply, enabled

# from the seed: the second migration completes on both sleds, the source's report starts an
# update saga, which makes VMM 2 active
TO_VMM2_ACTIVE = [
    "sled-agent.migration_target_completes(migration=1)",
    "sled-agent.migration_source_completes(migration=1)",
    "sled-agent.deliver_report(vmm=1, keep=0, update=started)",
    "start-instance-update.LOCK_INSTANCE(saga=0, outcome=ok)",
    "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA(saga=0, outcome=ok)",
    "instance-update.BECOME_UPDATER(saga=0, outcome=ok)",
    "instance-update.RECONCILE_RESOURCES(saga=0, outcome=ok)",
    "instance-update.COMMIT_INSTANCE_UPDATES(saga=0, outcome=ok)",
]


def test_deep_seeds_are_opt_in_seeds() -> None:
    assert set(DEEP_SEEDS) <= set(OPT_IN_SEEDS)
    assert not set(DEEP_SEEDS) & set(SEEDS)


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_stop_and_reboot_of_the_third_vmm_start_an_update_saga(revision: str) -> None:
    model = model_for(Config(revision=revision))
    (seed,) = seed_states(model, ["remigrating"])
    assert len(seed.prefix) == 42
    s = seed.state
    assert (s["i_active"], s["i_target"], s["i_mig"]) == (1, 2, 1)
    for lab in TO_VMM2_ACTIVE:
        t = apply(model, model.action_index(lab), s)
        assert t is not None, lab
        s = t
    assert s["i_active"] == 2
    # VMM 2's own report (the target side's Completed) has not reached Nexus
    assert s["m_tgt_st.1"] != s["sa_mtgt_st.1"]
    on = {model.actions[i].label for i in enabled(model, s)}
    for op in ("stop", "reboot"):
        label = f"user.instance_{op}(vmm=2, sled=ok, update=started)"
        assert label in on
        after = apply(model, model.action_index(label), s)
        assert after is not None
        assert after["m_tgt_st.1"] == s["sa_mtgt_st.1"]  # the side is delivered


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_generation_can_start_from_the_deep_seed(revision: str) -> None:
    """The seed's path runs into no known divergence, so generation can use it."""
    model = model_for(Config(revision=revision))
    (start,) = seed_paths(model, DEEP_SEEDS)
    assert start.name == "remigrating" and len(start.labels) == 42
