"""The lockstep Hypothesis machine (conformance/lockstep.py): the model and the implementation
agree along Hypothesis-chosen runs, and an implementation defect makes the machine fail with a
shrunk trace file that `lifecycle traces replay` reproduces."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from conformance.lockstep import (
    DIR_ENV,
    PHASES,
    LockstepFailure,
    LockstepMachine,
    lockstep_machine,
    trace_name,
)
from conformance.refinement import find_run
from conformance.replay import Mismatch, Replayer, replay_trace
from impl.errors import NexusCrashed
from impl.executor.dag import Outcome
from model.actions import model_for
from model.step import enabled
from model.trace import load_itf


def pinned(max_examples: int, steps: int) -> settings:
    return settings(max_examples=max_examples, stateful_step_count=steps, derandomize=True,
                    database=None, deadline=None, report_multiple_bugs=False, phases=PHASES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Record:
    """What the runs of a recording machine did: the labels of each finished run and of
    each failing one, in order."""

    def __init__(self) -> None:
        self.runs: list[list[str]] = []
        self.failures: list[list[str]] = []


def recording(machine: type[LockstepMachine], rec: Record) -> type[LockstepMachine]:
    class Recording(machine):  # type: ignore[valid-type,misc]
        def _fail(self, mm: Mismatch) -> None:
            rec.failures.append(list(self.labels))
            super()._fail(mm)

        def teardown(self) -> None:
            rec.runs.append(list(self.labels))
            super().teardown()

    Recording.__name__ = machine.__name__
    return Recording


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_lockstep_conforms(revision: str, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    rec = Record()
    run_state_machine_as_test(recording(lockstep_machine(revision), rec),
                              settings=pinned(12, 25))
    assert rec.failures == [] and list(tmp_path.iterdir()) == []
    # the runs did something: many steps, runs past a seed, a spread of actions
    labels = [lab for run in rec.runs for lab in run]
    assert len(rec.runs) >= 12
    assert len(labels) >= 150
    assert max(len(run) for run in rec.runs) >= 25
    assert len({lab.split("(")[0] for lab in labels}) >= 15


def _catch(revision: str, mutant: str, out: Path, budget: settings) -> None:
    """Run the machine with `mutant` in the implementation; it must fail, and the trace it
    leaves must be the last failing run and reproduce the mismatch with the defect only."""
    rec = Record()
    machine = recording(lockstep_machine(revision, (mutant,)), rec)
    with pytest.raises(LockstepFailure) as caught:
        run_state_machine_as_test(machine, settings=budget)
    err = caught.value
    path = out / trace_name(revision, (mutant,))
    assert err.path == path and path.is_file()
    rerun = f"lifecycle traces replay {path} --impl-mutant {mutant}"
    assert rerun in str(err) and str(path) in str(err)
    assert err.mismatch.diff or err.mismatch.note
    trace = load_itf(path)
    assert trace.cfg.revision == revision and trace.cfg.mutants == ()
    assert trace.meta["replay"] == rerun
    # the file holds the last failing run (Hypothesis reports the shrunk one last)
    assert rec.failures and trace.labels == rec.failures[-1]
    assert len(trace.labels) == err.mismatch.step
    bad = replay_trace(trace, str(path), impl_mutants=(mutant,))
    assert bad.mismatch is not None
    assert (bad.mismatch.step, bad.mismatch.label) == (err.mismatch.step, err.mismatch.label)
    assert bad.mismatch.diff == err.mismatch.diff
    good = replay_trace(trace, str(path))
    assert good.ok, good.mismatch and good.mismatch.render()
    assert good.steps == len(trace.labels)


@pytest.mark.parametrize(("revision", "mutant"), [("baseline", "no-updater-lock"),
                                                  ("baseline", "migrate-unwind-clears-ids"),
                                                  ("rfd486", "no-updater-lock")])
def test_lockstep_catches_impl_defect(revision: str, mutant: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    _catch(revision, mutant, tmp_path, pinned(30, 20))


def test_out_dir_overrides_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env, own = tmp_path / "env", tmp_path / "own"
    monkeypatch.setenv(DIR_ENV, str(env))
    machine = lockstep_machine("baseline", ("no-updater-lock",), out_dir=own,
                               seeds=("stopping",))
    with pytest.raises(LockstepFailure) as caught:
        run_state_machine_as_test(machine, settings=pinned(10, 3))
    assert caught.value.path.parent == own and not env.exists()


def test_factory_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown revision"):
        lockstep_machine("nope")
    with pytest.raises(ValueError, match="unknown mutant"):
        lockstep_machine("baseline", ("nope",))
    with pytest.raises(ValueError, match="not implementation defects"):
        lockstep_machine("baseline", ("no-background-updater",))
    with pytest.raises(ValueError, match="unusable seeds"):
        lockstep_machine("baseline", seeds=("nope",))


PANIC_TRACE = Path(__file__).parent / "traces" / "update-saga-panics.itf.json"


def test_update_saga_panic_is_a_crash_on_both_sides() -> None:
    """Judged 2026-11-30 (first seen by the long rfd486 run below at step 59, then found by
    the checker as finding F4 in 8 steps from `migrating`): after the update saga committed
    a cleared target with the migration still linked, and the source reported Completed,
    UpdatesRequired step C panics (SPEC §4.6). Nexus aborts on panic, so in the model only
    the crash outcome of the re-executed commit is enabled, and the implementation's replica
    crashes when it re-executes the node."""
    trace = load_itf(PANIC_TRACE)
    rp = Replayer(trace, str(PANIC_TRACE))
    try:
        assert rp._setup(trace.states[0]) is None
        for i, label in enumerate(trace.labels, start=1):
            mm = rp.step(i, label, trace.states[i - 1], trace.states[i])
            assert mm is None, mm.render()
        model = model_for(trace.cfg)
        commit = "instance-update.COMMIT_INSTANCE_UPDATES(saga=0, outcome="
        now = {model.actions[k].label for k in enabled(model, trace.states[-1])}
        assert commit + "crash)" in now and commit + "ok)" not in now
        sid = rp.slots.sagas[("uc", 0)]
        owner = find_run(rp.ctrl, sid)[0].owner  # type: ignore[index]
        with pytest.raises(NexusCrashed, match="panic"):
            rp.ctrl.nexuses[owner].step_saga(sid, Outcome.OK)
        # left alone, the implementation restarts the replica, stops offering the panicking
        # saga (and any later update saga that panics on the same snapshot), and settles
        # with the instance reported stuck
        rp.oracle.free = True
        rp.ctrl.settle()
        assert rp.ctrl.stuck_instances() == {rp.instance_id}
        assert all(nx.alive for nx in rp.ctrl.nexuses.values())
    finally:
        rp.ctrl.close(drop_schema=True)


@pytest.mark.slow
@pytest.mark.parametrize("revision", [
    "baseline", "rfd486"])
def test_lockstep_conforms_long(revision: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    run_state_machine_as_test(lockstep_machine(revision), settings=pinned(150, 60))
    assert list(tmp_path.iterdir()) == []


# Defects the machine was seen to catch with these budgets. Not listed: at the baseline,
# clear-ids-on-source-completed, lock-in-runtime-state and release-not-idempotent, whose
# 150 x 40 runs shrink to a disagreement that the plain implementation shows too (see
# docs/conformance.md, Lockstep); rfd486 was checked for the three listed only.
LONG_TEETH = [
    *(("baseline", m, 150, 40) for m in (
        "commit-ignores-generation", "delete-vmm-before-commit", "migrate-unwind-clears-ids",
        "no-updater-lock", "reports-ignore-generation", "start-unwind-clears-unconditionally",
        "unlock-ignores-holder")),
    *(("rfd486", m, 60, 30) for m in (
        "delete-vmm-before-commit", "migrate-unwind-clears-ids", "no-updater-lock")),
]


@pytest.mark.slow
@pytest.mark.parametrize(("revision", "mutant", "examples", "steps"), LONG_TEETH)
def test_lockstep_catches_impl_defect_long(revision: str, mutant: str, examples: int,
                                           steps: int, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    _catch(revision, mutant, tmp_path, pinned(examples, steps))
