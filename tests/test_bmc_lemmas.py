"""The bounded check with the stored, re-proven lemmas asserted on every path state
(`model.bmc.lemma_support`) gives the same verdicts and counterexample lengths as without
them: the lemmas hold in every reachable state, so they remove no path the checker must see.
"""

from __future__ import annotations

import pytest

from model.bmc import Checker, lemma_support, verify_many
from model.state import Config

REVISIONS = ["baseline", "rfd486"]


@pytest.mark.parametrize("revision", REVISIONS)
def test_lemmas_exist_for_the_plain_model_only(revision: str) -> None:
    assert lemma_support(Config(revision=revision)) is not None
    # a defect changes the transitions; no lemma file is stored for it, so nothing is assumed
    assert lemma_support(Config(revision=revision, mutants=("no-updater-lock",))) is None
    assert Checker(Config(revision=revision), ["running"], lemmas=True).support is not None


@pytest.mark.parametrize("revision", REVISIONS)
def test_lemmas_change_no_verdict(revision: str) -> None:
    cfg = Config(revision=revision)
    seeds = ["stopping", "migration-unwound", "migrating"]
    with_, without = (verify_many([(cfg, None)], 4, seeds=seeds, lemmas=flag, workers=1)[0]
                      for flag in (True, False))
    got = {i: (v.status, v.depth) for i, v in with_.verdicts.items()}
    assert got == {i: (v.status, v.depth) for i, v in without.verdicts.items()}
    # the comparison has teeth: on the baseline some invariants are violated within 4 steps
    if revision == "baseline":
        assert any(s == "violated" for s, _ in got.values())
