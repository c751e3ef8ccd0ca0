"""Pinned facts about the model: counts, vocabulary, seeds, bad input."""

from __future__ import annotations

import pytest

from model.actions import model_for
from model.expr import CONCRETE, Ctx
from model.findings import FINDINGS, findings_for
from model.invariants import INVARIANTS, check_invariant_ids
from model.seeds import OPT_IN_SEEDS, SEEDS, seed_states
from model.state import Config
from model.vocab import MUTANTS, UsageError, check_mutants, check_revision

# pinned like tlaplus/Examples' manifests: a change to the model shows up here first
INVARIANT_COUNT = 41
MUTANT_COUNT = 11
ACTIONS = {"baseline": 247, "rfd486": 251}
STATE_VARS = 152


def test_counts_are_pinned() -> None:
    assert len(INVARIANTS) == INVARIANT_COUNT
    assert len(MUTANTS) == MUTANT_COUNT
    for rev, n in ACTIONS.items():
        m = model_for(Config(revision=rev))
        assert len(m.actions) == n
        assert len(m.layout.vars) == STATE_VARS


def test_every_invariant_has_a_sentence_and_a_source() -> None:
    kinds = {inv.kind for inv in INVARIANTS.values()}
    assert kinds == {"state", "step", "replay"}
    for inv in INVARIANTS.values():
        assert inv.sentence.endswith(".") and len(inv.sentence) > 30, inv.id
        assert inv.spec, inv.id
    plus_cal = {"migration_requires_partner", "only_one_migration_per_vm",
                "active_vms_have_resources", "stopped_instance_has_no_vms",
                "migration_requires_active_vm", "updater_lock_not_stolen",
                "migration_target_not_stolen", "destroyed_vms_stay_destroyed"}
    assert plus_cal <= set(INVARIANTS)


def test_unknown_names_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(UsageError, match="valid revisions: baseline, rfd486"):
        check_revision("head")
    with pytest.raises(UsageError, match="no-updater-lock"):
        check_mutants(["no-such-defect"])
    with pytest.raises(UsageError, match="no_leaked_lock"):
        check_invariant_ids(["nope"])
    with pytest.raises(UsageError):
        Config(revision="nope")


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_seeds_replay_and_satisfy_every_invariant(revision: str) -> None:
    model = model_for(Config(revision=revision))
    seeds = seed_states(model)
    assert [s.name for s in seeds] == list(SEEDS)
    finding_invs = findings_for(revision)
    for sd in seeds:
        ctx = Ctx(CONCRETE, sd.state, model.layout.sizes)
        broken = [i.id for i in INVARIANTS.values() if i.kind != "step"
                  and i.id not in finding_invs and not i.fn(ctx, model.cfg, model)]
        assert broken == [], (sd.name, broken)


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_opt_in_seeds_replay_only_when_named(revision: str) -> None:
    model = model_for(Config(revision=revision))
    assert not {s.name for s in seed_states(model)} & set(OPT_IN_SEEDS)
    named = seed_states(model, list(OPT_IN_SEEDS))
    assert [s.name for s in named] == list(OPT_IN_SEEDS)
    for sd in named:
        ctx = Ctx(CONCRETE, sd.state, model.layout.sizes)
        broken = [i.id for i in INVARIANTS.values() if i.kind != "step"
                  and not i.fn(ctx, model.cfg, model)]
        assert broken == [], (sd.name, broken)


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_seeds_replay_under_every_mutant(mutant: str) -> None:
    for rev in ("baseline", "rfd486"):
        model = model_for(Config(revision=rev, mutants=(mutant,)))
        assert len(seed_states(model)) == len(SEEDS)


def test_findings_name_real_invariants() -> None:
    for f in FINDINGS:
        assert set(f.invariants) <= set(INVARIANTS), f.id
        assert f.revision in ("baseline", "rfd486")
