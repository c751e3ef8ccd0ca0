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

On the baseline the path goes on to a second start under the stale migration ids
(`RESTART_UNDER_STALE_MIGRATION`, stored for generation's last pass): the pair
MIGRATING/STARTING; and on from there to an unwound VMM left active
(`UNWOUND_VMM_LEFT_ACTIVE`): STOPPED/SAGA_UNWOUND. On rfd486 the instance-watcher leads to
the same kind of restart (`RESTART_AFTER_WATCHER`): MIGRATING/CREATING, then
MIGRATING/STARTING.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.coverage import pair_of
from conformance.generate import last_resort_paths, walk_from_labels, write_walk
from conformance.replay import replay_trace
from conformance.scenarios import (
    RESTART_AFTER_WATCHER,
    RESTART_OVER_UNWOUND_VMM,
    RESTART_UNDER_STALE_MIGRATION,
    START_RACE,
    START_UNWINDS_UNDER_MIGRATION,
    UNWOUND_VMM_LEFT_ACTIVE,
)
from model.actions import model_for
from model.bmc import eval_concrete
from model.invariants import INVARIANTS
from model.state import FWD, IDLE, UNWIND, Config
from model.step import apply
from model.trace import load_itf

PATH = START_UNWINDS_UNDER_MIGRATION


def _run(revision: str, path: list[str] = PATH) -> list[tuple[str, list[str]]]:
    model = model_for(Config(revision=revision))
    s = model.layout.fresh_state()
    out = []
    for lab in path:
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


# the step the last pass adds to the stored path (docs/conformance.md, "The last pass")
MARK_AS_STARTING = "instance-start.MARK_AS_STARTING(saga=1, outcome=crash)"
F1 = ["target_implies_migration", "stopped_instance_has_no_vms", "migration_requires_active_vm"]


def test_a_restart_under_the_stale_migration_reaches_migrating_starting() -> None:
    """Baseline: past the unwound start, the VMM's Destroyed report starts an update saga
    whose commit (step 27) writes NoVmm with the migration ids kept, F1's three invariants;
    a second start is accepted, and its MARK_AS_STARTING links a VMM while the instance still
    names the migration: MIGRATING/STARTING, a pair no budgeted search reaches."""
    steps = _run("baseline", [*RESTART_UNDER_STALE_MIGRATION, MARK_AS_STARTING])
    assert len(steps) == 31
    assert all(not bad for _, bad in steps[:26])
    assert all(bad == F1 for _, bad in steps[26:30]), steps[26:30]
    assert steps[-1] == ("pair:MIGRATING/STARTING", [])


def test_the_restart_path_is_no_rfd486_path() -> None:
    with pytest.raises(ValueError):
        walk_from_labels(Config(revision="rfd486"), RESTART_UNDER_STALE_MIGRATION)


def test_the_restart_path_replays_without_a_mismatch(tmp_path: Path) -> None:
    cfg = Config()
    p = write_walk(tmp_path / "restart.itf.json", cfg,
                   walk_from_labels(cfg, [*RESTART_UNDER_STALE_MIGRATION, MARK_AS_STARTING]),
                   "restart under a stale migration")
    res = replay_trace(load_itf(p), str(p))
    assert res.ok and res.steps == 31, res.mismatch and res.mismatch.render()


def test_search_beyond_finds_the_last_step_from_the_stored_path() -> None:
    """`scripts/search_beyond.py`, the no-budget search of docs/conformance.md: from the
    stored restart path, the pair is one step away (the MARK_AS_STARTING that the last pass
    adds)."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "scripts/search_beyond.py", "baseline",
                          "pair:MIGRATING/STARTING", "--depth", "2", "--seconds", "60"],
                         capture_output=True, text=True, cwd=root, timeout=600, check=False,
                         env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(root)})
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    k = lines.index(next(x for x in lines if x.startswith("found pair:MIGRATING/STARTING")))
    # one step past a state of a stored path that extends the restart path (the restart
    # path's own last state, or a state of unwound-vmm-left-active, which extends it)
    assert ": 1 step past " in lines[k]
    path = json.loads(lines[k + 1])
    assert path[:30] == RESTART_UNDER_STALE_MIGRATION
    assert _run("baseline", path)[-1][0] == "pair:MIGRATING/STARTING"
    assert not any(x.startswith("undecided") for x in lines)


# the steps the last pass adds to the two paths that extend the ones above
UNWIND_CREATE_VMM_RECORD = "instance-start.CREATE_VMM_RECORD.undo(saga=1, outcome=undo)"
ENSURE_REGISTERED = "instance-start.ENSURE_REGISTERED(saga=1, outcome=ok)"


def test_an_unwound_vmm_left_active_shows_stopped_saga_unwound() -> None:
    """Baseline, past the restart: the migration fails, the updater's commit clears the stale
    ids and moves the generation; the second start saga fails at DPD_ENSURE, its
    MARK_AS_STARTING undo misses the generation, and its CREATE_VMM_RECORD undo marks the
    still-active VMM (generation 1: it never had a report) SagaUnwound. The baseline shows
    that as Stopped: the pair STOPPED/SAGA_UNWOUND, with every invariant holding (a start
    may take the slot over)."""
    steps = _run("baseline", [*UNWOUND_VMM_LEFT_ACTIVE, UNWIND_CREATE_VMM_RECORD])
    assert len(steps) == 42
    assert steps[30] == ("pair:MIGRATING/STARTING", [])
    assert all(not bad for _, bad in steps[30:])
    assert steps[-1] == ("pair:STOPPED/SAGA_UNWOUND", [])


def test_rfd486_restarts_under_the_stale_migration_after_the_watcher() -> None:
    """rfd486: the watcher finds the unwound start's VMM gone and marks it Failed; the update
    saga's commit keeps the migration ids (F1's invariants, steps 24-27); a second start links
    a Creating VMM under them (MIGRATING/CREATING) and its registration moves it to Starting:
    MIGRATING/STARTING."""
    steps = _run("rfd486", [*RESTART_AFTER_WATCHER, ENSURE_REGISTERED])
    assert len(steps) == 30
    assert all(not bad for _, bad in steps[:23])
    assert all(bad == F1 for _, bad in steps[23:27]), steps[23:27]
    assert steps[27] == ("pair:MIGRATING/CREATING", [])
    assert steps[-1] == ("pair:MIGRATING/STARTING", [])


def test_the_last_pass_searches_each_revisions_own_paths() -> None:
    def names(revision: str) -> tuple[list[str], list[str]]:
        paths, skipped = last_resort_paths(Config(revision=revision))
        return [n for n, _ in paths], skipped

    assert names("baseline") == (["start-unwinds-under-migration",
                                  "restart-under-stale-migration", "unwound-vmm-left-active"],
                                 ["restart-after-watcher"])
    assert names("rfd486") == (["start-unwinds-under-migration", "restart-after-watcher"],
                               ["restart-under-stale-migration", "unwound-vmm-left-active"])


@pytest.mark.parametrize(("revision", "path", "pair"), [
    ("baseline", [*UNWOUND_VMM_LEFT_ACTIVE, UNWIND_CREATE_VMM_RECORD], "STOPPED/SAGA_UNWOUND"),
    ("rfd486", [*RESTART_AFTER_WATCHER, ENSURE_REGISTERED], "MIGRATING/STARTING"),
])
def test_the_extended_paths_replay_without_a_mismatch(revision: str, path: list[str],
                                                       pair: str, tmp_path: Path) -> None:
    cfg = Config(revision=revision)
    p = write_walk(tmp_path / "path.itf.json", cfg, walk_from_labels(cfg, path), pair)
    res = replay_trace(load_itf(p), str(p))
    assert res.ok and res.steps == len(path), res.mismatch and res.mismatch.render()


def test_a_restart_takes_over_the_unwound_vmms_slot_on_rfd486() -> None:
    """The directed path restart-over-unwound-vmm: after the unwound start, the migration
    fails and the updater clears it (FAILED/SAGA_UNWOUND); a start is accepted from Failed,
    its MARK_AS_STARTING takes over the slot of the SagaUnwound VMM (what #5749's SagaUnwound
    is for), the saga runs to its end, and the reaper soft-deletes both unwound VMMs."""
    steps = _run("rfd486", RESTART_OVER_UNWOUND_VMM)
    assert len(steps) == 42
    assert all(not bad for _, bad in steps)
    assert steps[20][0] == "pair:MIGRATING/SAGA_UNWOUND"
    assert steps[31][0] == "pair:FAILED/SAGA_UNWOUND"
    assert steps[35][0] == "pair:STARTING/CREATING"  # MARK_AS_STARTING took the slot over
    assert steps[-1][0] == "pair:STARTING/STARTING"
    with pytest.raises(ValueError):
        walk_from_labels(Config(revision="baseline"), RESTART_OVER_UNWOUND_VMM)


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_a_start_race_unwinds_the_second_start(revision: str) -> None:
    """Two starts accepted back to back: the second saga's MARK_AS_STARTING meets the
    first one's VMM (not SagaUnwound), fails on its own verdict and unwinds."""
    steps = _run(revision, START_RACE)
    assert all(not bad for _, bad in steps)
    s = walk_from_labels(Config(revision=revision), START_RACE).states
    assert (s[8]["st_mode.1"], s[9]["st_mode.1"]) == (FWD, UNWIND)  # MARK began the unwind
    assert s[-1]["st_mode.1"] == IDLE and s[-1]["i_active"] == 0  # the first start's VMM


@pytest.mark.parametrize(("revision", "path"), [
    ("baseline", START_RACE), ("rfd486", START_RACE), ("rfd486", RESTART_OVER_UNWOUND_VMM)])
def test_the_directed_paths_replay_without_a_mismatch(revision: str, path: list[str],
                                                      tmp_path: Path) -> None:
    cfg = Config(revision=revision)
    p = write_walk(tmp_path / "path.itf.json", cfg, walk_from_labels(cfg, path), "directed")
    res = replay_trace(load_itf(p), str(p))
    assert res.ok and res.steps == len(path), res.mismatch and res.mismatch.render()
