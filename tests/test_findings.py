"""The findings about the protocol itself still reproduce (docs/findings.md), and with no
defect switched on every other invariant holds to the default depth."""

from __future__ import annotations

import pytest

from lifecycle.verify_cmd import DEFAULT_DEPTH
from model.bmc import verify
from model.findings import FINDINGS, findings_for
from model.state import Config

# finding id -> depth of its shortest counterexample
# (from the finding's seed: the default seeds, or the opt-in seed it names)
FINDING_DEPTH = {"Q3": 1, "Q1": 1, "Q1b": 1, "G4": 2, "F1": 7, "F2": 7, "F3": 8, "F4": 8,
                 "F5": 8}


@pytest.mark.parametrize("finding", [f for f in FINDINGS if FINDING_DEPTH[f.id] <= 2],
                         ids=lambda f: f.id)
def test_shallow_findings_reproduce(finding) -> None:  # type: ignore[no-untyped-def]
    check(finding)


@pytest.mark.slow
@pytest.mark.parametrize("finding", [f for f in FINDINGS if FINDING_DEPTH[f.id] > 2],
                         ids=lambda f: f"{f.id}-{f.revision}")
def test_deep_findings_reproduce(finding) -> None:  # type: ignore[no-untyped-def]
    check(finding)


def check(finding) -> None:  # type: ignore[no-untyped-def]
    depth = FINDING_DEPTH[finding.id]
    seeds = [finding.seed] if finding.seed else None
    report = verify(Config(revision=finding.revision), depth, list(finding.invariants),
                    seeds=seeds)
    got = {i: v.depth for i, v in report.verdicts.items() if v.status == "violated"}
    assert min(got.values()) == depth, got
    if finding.fixed_in:
        fixed = verify(Config(revision=finding.fixed_in), depth, list(finding.invariants),
                       seeds=seeds)
        assert all(v.status == "holds" for v in fixed.verdicts.values())


@pytest.mark.slow
@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_default_verify_holds_but_for_findings(revision: str) -> None:
    report = verify(Config(revision=revision), DEFAULT_DEPTH)
    known = findings_for(revision)
    bad = [i for i, v in report.verdicts.items() if v.status != "holds" and i not in known]
    assert bad == []
    assert all(v.depth == DEFAULT_DEPTH for v in report.verdicts.values()
               if v.status == "holds")
