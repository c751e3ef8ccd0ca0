"""Teeth of the conformance suite: every defect the implementation can switch on, switched
on in the implementation alone, makes the generated baseline suite fail at a named step."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.generate import generate_suite, write_suite
from conformance.replay import replay_trace
from model.state import Config
from model.trace import load_itf
from model.vocab import MUTANTS

IMPL_MUTANTS = sorted(m for m, mu in MUTANTS.items() if mu.in_impl)


@pytest.mark.slow
def test_every_impl_mutant_is_detected(tmp_path: Path) -> None:
    paths = write_suite(generate_suite(Config(), seed=0, walks=600), tmp_path, seed=0)
    traces = [(p, load_itf(p)) for p in paths]
    for p, tr in traces:  # the suite itself conforms
        res = replay_trace(tr, str(p))
        assert res.ok, res.mismatch and res.mismatch.render()
    missed = []
    for m in IMPL_MUTANTS:
        hit = None
        for p, tr in traces:
            res = replay_trace(tr, str(p), impl_mutants=(m,))
            if res.mismatch is not None:
                hit = res.mismatch
                break
        if hit is None:
            missed.append(m)
            continue
        assert hit.step >= 1 and hit.label
        assert hit.diff or hit.note
        assert f"--impl-mutant {m}" in hit.rerun
    assert missed == [], f"defects the suite does not detect: {missed}"
    assert len(IMPL_MUTANTS) == 10
