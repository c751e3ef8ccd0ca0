"""The depth-major search behind `lifecycle verify --first` (`bmc._first_counterexample`).

The length of the counterexample it reports must not depend on how the (seed, depth) queries
are spread over the workers, and must agree with the seed-by-seed check (`Checker.run`).
"""

from __future__ import annotations

import pytest

from model.bmc import Checker, Unrolling, Verdict, verify, verify_many
from model.findings import findings_for
from model.invariants import INVARIANTS
from model.seeds import SEEDS
from model.state import Config


def judged(revision: str, depth: int) -> list[str]:
    """The invariants a mutant run judges: those without a known finding (as in
    tests/test_mutants.py)."""
    return [i for i in INVARIANTS if i not in findings_for(revision, None, depth, 8)]


def violated(verdicts: dict[str, Verdict]) -> dict[str, int]:
    return {i: v.depth for i, v in verdicts.items() if v.status == "violated"}


@pytest.mark.parametrize("workers", [1, 2])
def test_shortest_counterexample_does_not_depend_on_the_workers(
        workers: int) -> None:
    cfg = Config(revision="baseline", mutants=("reports-ignore-generation",))
    report = verify(cfg, 4, judged("baseline", 4), stop_on_violation=True, workers=workers)
    hits = violated(report.verdicts)
    assert set(hits.values()) == {3}
    assert "reports_apply_monotonically" in hits
    assert all(len(v.trace.steps) == 3 for v in report.verdicts.values() if v.trace is not None)
    # not violated: proven free of counterexamples through the depth before the shortest
    rest = {(v.status, v.depth) for v in report.verdicts.values() if v.status != "violated"}
    assert rest == {("unknown", 2)}


def test_same_answer_with_one_and_two_workers() -> None:
    cfg = Config(revision="rfd486", mutants=("release-not-idempotent",))
    one = verify(cfg, 3, judged("rfd486", 3), stop_on_violation=True, workers=1)
    two = verify(cfg, 3, judged("rfd486", 3), stop_on_violation=True, workers=2)
    assert set(violated(one.verdicts).values()) == set(violated(two.verdicts).values()) == {3}
    assert "replay_is_idempotent" in violated(one.verdicts)
    assert "replay_is_idempotent" in violated(two.verdicts)


def test_depth_matches_the_seed_by_seed_check() -> None:
    cfg = Config(revision="baseline", mutants=("release-not-idempotent",))
    ids = judged("baseline", 3)
    report = verify(cfg, 3, ids, stop_on_violation=True)
    best = min(violated(report.verdicts).values())
    per_seed = [Checker(cfg, [s]).run(ids, 3, stop_on_violation=True) for s in SEEDS]
    assert best == min(v.depth for r in per_seed for v in r.verdicts.values()
                       if v.status == "violated")


def test_seed_itself_violating_is_depth_zero() -> None:
    cfg = Config(revision="rfd486", mutants=("no-background-updater",))
    report = verify(cfg, 2, judged("rfd486", 2), stop_on_violation=True)
    assert violated(report.verdicts).get("update_never_silently_lost") == 0


def test_no_counterexample_means_every_invariant_holds_to_the_depth() -> None:
    ids = ["no_leaked_lock", "counter_never_negative"]
    first, = verify_many([(Config(revision="rfd486"), ids)], 2, stop_on_violation=True)
    full, = verify_many([(Config(revision="rfd486"), ids)], 2)
    assert {i: (v.status, v.depth) for i, v in first.verdicts.items()} == {
        i: (v.status, v.depth) for i, v in full.verdicts.items()} == {
        i: ("holds", 2) for i in ids}


def test_two_revisions_in_one_run_are_answered_separately() -> None:
    jobs: list[tuple[Config, list[str] | None]] = [
        (Config(revision=r, mutants=("reports-ignore-generation",)), judged(r, 3))
        for r in ("baseline", "rfd486")]
    for report in verify_many(jobs, 3, stop_on_violation=True):
        assert min(violated(report.verdicts).values()) == 3


def test_a_query_already_useless_is_abandoned_without_solving() -> None:
    u = Unrolling(Config(revision="rfd486"), "running")
    assert u.query(list(INVARIANTS), 2, lambda: True) == ("abandoned", {})
    assert u.query(list(INVARIANTS), 1, lambda: False)[0] == "unsat"
