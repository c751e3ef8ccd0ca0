"""History validation (docs/history-validation.md): recorded implementation histories are
checked step by step against the model; corrupted ones are refused naming the event, bad
files are refused with exit status 2, and implementation defects show as unexplained steps."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conformance.generate import walk_from_labels, write_walk
from conformance.history_file import HistoryError, load
from conformance.history_run import record_free_run
from conformance.impl_fixtures import PG_SKIP_REASON, backend, pg_url
from conformance.replay_history import replay_with_history
from conformance.scenarios import STALE_REPORT
from conformance.validate import validate
from impl.controller import Controller
from impl.history import HistoryRecorder
from lifecycle.cli import app
from model.state import Config
from model.trace import load_itf
from model.vocab import InstanceState

REGRESSIONS = Path(__file__).parent.parent / "conformance" / "regressions"

runner = CliRunner()


def _scripted_history(path: Path) -> Path:
    """A deterministic history: create, start, migrate, stop, delete, driven step by step."""
    ctl = Controller(seed=5)
    rec = HistoryRecorder(path).attach(ctl.datastore)
    try:
        iid, sid = ctl.create_instance("inst")
        ctl.run_saga(sid)
        ctl.start_instance(iid)
        ctl.settle()
        ctl.migrate_instance(iid, "sled-2")
        ctl.settle()
        ctl.stop_instance(iid)
        ctl.settle()
        ctl.delete_instance(iid)
        ctl.settle()
    finally:
        rec.detach(ctl.datastore)
        ctl.close()
    return path


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _scripted_history(tmp_path_factory.mktemp("hist") / "scripted.jsonl")


def test_scripted_history_validates(scripted: Path) -> None:
    h = load(scripted)
    labels = {e.label for e in h.events}
    assert {"instance-create.CREATE_INSTANCE_RECORD", "instance-start.MARK_AS_STARTING",
            "instance-migrate.SET_MIGRATION_IDS", "instance-update.COMMIT_INSTANCE_UPDATES",
            "instance-delete.INSTANCE_DELETE_RECORD"} <= labels, labels
    res = validate(h)
    assert res.failure is None, res.failure
    assert 20 <= res.steps <= len(h.events) - 1  # events of one node execution are joined
    r = runner.invoke(app, ["validate", str(scripted)])
    assert r.exit_code == 0, r.output
    assert "every step is a transition of the model" in r.output


def test_every_write_is_attributed(scripted: Path) -> None:
    """The recorder names actions by implementation function names; a rename would turn
    labels into `unknown` (which any action explains)."""
    import impl.background.abandoned_vmm_reaper as reaper
    import impl.background.instance_watcher as watcher
    from impl.executor.saga_executor import SagaExecutor
    from impl.nexus.nexus import Nexus

    for owner, fn in ((reaper, "reap_vmm"), (watcher, "poll_vmm"), (Nexus, "_request_state"),
                      (Nexus, "cpapi_instances_put"), (Nexus, "notify_instance_updated"),
                      (SagaExecutor, "_step_forward"), (SagaExecutor, "_step_undo")):
        assert hasattr(owner, fn), fn
    labels = [e.label for e in load(scripted).events]
    assert "unknown" not in labels and not any("impl:" in lab for lab in labels), labels


def _body(ev: dict[str, Any]) -> dict[str, Any]:
    """An event's records: all of them, or the changes since the instance's last event."""
    out: dict[str, Any] = ev["records"] if "records" in ev else ev["changes"]
    return out


def _corrupt(src: Path, dst: Path, label: str, state: InstanceState) -> int:
    """Copy `src`, setting the instance state of the first event named `label`; returns its seq."""
    lines = src.read_text().splitlines()
    for k, line in enumerate(lines[1:], start=1):
        ev = json.loads(line)
        if ev["label"] == label:
            _body(ev)["instance"][0] = int(state)
            lines[k] = json.dumps(ev)
            dst.write_text("\n".join(lines) + "\n")
            return int(ev["seq"])
    raise AssertionError(f"no event {label}")


def test_corrupted_event_is_named_with_a_core(scripted: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    # MOVE_TO_STOPPED writing Running instead of Stopped
    seq = _corrupt(scripted, bad, "instance-create.MOVE_TO_STOPPED", InstanceState.VMM)
    res = validate(load(bad))
    f = res.failure
    assert f is not None and f.event.seq == seq and f.label == "instance-create.MOVE_TO_STOPPED"
    assert any("i_state" in part for _lab, core in f.cores for part in core), f.cores
    assert any(row[0] == "i_state" for row in f.diff), f.diff
    r = runner.invoke(app, ["validate", str(bad)])
    assert r.exit_code == 1, r.output
    assert f"event seq {seq}" in r.output and "ruled out" in r.output
    assert "nearest step of instance-create.MOVE_TO_STOPPED" in r.output


def test_guard_conjunct_named(scripted: Path, tmp_path: Path) -> None:
    """A write attributed to an action that is not enabled: the core names a guard conjunct."""
    lines = scripted.read_text().splitlines()
    evs = [json.loads(x) for x in lines[1:]]
    k = next(i for i, e in enumerate(evs) if e["label"] == "instance-start.MARK_AS_STARTING")
    evs[k]["label"] = "abandoned-vmm-reaper.reap"  # needs a destroyable VMM
    bad = tmp_path / "guard.jsonl"
    bad.write_text("\n".join([lines[0], *map(json.dumps, evs)]) + "\n")
    f = validate(load(bad)).failure
    assert f is not None and f.event.seq == evs[k]["seq"]
    assert any(part.startswith("guard:") for _lab, core in f.cores for part in core), f.cores


def test_write_by_an_action_the_model_lacks(scripted: Path, tmp_path: Path) -> None:
    """E.g. an undo the model's node does not have: nothing can explain its write."""
    lines = scripted.read_text().splitlines()
    evs = [json.loads(x) for x in lines[1:]]
    k = next(i for i, e in enumerate(evs) if e["label"] == "instance-migrate.SET_MIGRATION_IDS")
    evs[k]["label"] = "instance-migrate.SET_MIGRATION_IDS.undo"
    evs[k]["key"] += "-undo"
    bad = tmp_path / "undo.jsonl"
    bad.write_text("\n".join([lines[0], *map(json.dumps, evs)]) + "\n")
    f = validate(load(bad)).failure
    assert f is not None and f.event.seq == evs[k]["seq"]
    assert "the model has no action named" in f.reason


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty file"),
    ('{"format": "other"}\n', "not a history header"),
    ('{"format": "lifecycle-history/1"}\n{"seq": 1,\n', ":2: not JSON"),
    ('{"format": "lifecycle-history/1"}\n{"seq": 1, "instance": "i", "label": "x"}\n',
     "`key` missing"),
    ('{"format": "lifecycle-history/1"}\n'
     '{"seq": 1, "instance": "i", "label": "x", "key": "k", "records": {}}\n',
     "`records` lacks `instance`"),
    ('{"format": "lifecycle-history/1"}\n'
     '{"seq": 1, "instance": "i", "label": "x", "key": "k", "changes": {}}\n',
     "`changes` for instance i before its `records`"),
])
def test_malformed_history_exit_2(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "h.jsonl"
    p.write_text(text)
    with pytest.raises(HistoryError, match=message.replace("`", ".")):
        load(p)
    r = runner.invoke(app, ["validate", str(p)])
    assert r.exit_code == 2
    assert message.split("`")[0] in r.output


def test_record_values_of_the_wrong_kind_exit_2(scripted: Path, tmp_path: Path) -> None:
    lines = scripted.read_text().splitlines()
    evs = [json.loads(x) for x in lines[1:]]
    k = next(i for i, e in enumerate(evs) if _body(e)["vmms"])
    vid = next(iter(_body(evs[k])["vmms"]))
    _body(evs[k])["vmms"][vid][0] = "Running"  # a name where the state number belongs
    bad = tmp_path / "kind.jsonl"
    bad.write_text("\n".join([lines[0], *map(json.dumps, evs)]) + "\n")
    r = runner.invoke(app, ["validate", str(bad)])
    assert r.exit_code == 2 and "records with unexpected values" in r.output, r.output


def test_missing_file_and_bad_revision_exit_2(scripted: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["validate", str(tmp_path / "nope.jsonl")]).exit_code == 2
    r = runner.invoke(app, ["validate", str(scripted), "--revision", "nope"])
    assert r.exit_code == 2


def test_free_run_history_validates_sqlite(tmp_path: Path) -> None:
    p = tmp_path / "free.jsonl"
    n, stats = record_free_run(p, backend("sqlite"), seed=2, instances=4, ops=150)
    assert n > 10, stats  # threads: how many writes land varies from run to run
    res = validate(load(p))
    assert res.failure is None, res.failure


def _caught(tmp_path: Path, mutant: str, seeds: list[int]) -> int | None:
    """The first seed whose free run with `mutant` switched on (in the implementation only)
    records a history with an unexplained step; None when every history validates."""
    for seed in seeds:
        p = tmp_path / f"{mutant}-{seed}.jsonl"
        try:
            record_free_run(p, backend("sqlite"), mutants=[mutant], seed=seed, instances=4,
                            ops=150)
        except RuntimeError:  # e.g. a defect that keeps the run from settling: the history
            pass  # recorded so far is still there to validate
        res = validate(load(p))
        if res.failure is not None:
            r = runner.invoke(app, ["validate", str(p)])
            assert r.exit_code == 1 and "unexplained" in r.output, r.output
            return seed
    return None


def test_free_run_without_updater_lock_is_unexplained(tmp_path: Path) -> None:
    # every update saga commits without holding the lock: the model's commit needs it
    assert _caught(tmp_path, "no-updater-lock", [1, 2]) is not None


def _racy_trace(tmp_path: Path, mutant: str) -> Path:
    """A trace that drives the implementation, step by step, into the interleaving `mutant`
    needs: the regression trace of a runtime write under a held lock, or a stale report."""
    if mutant == "lock-in-runtime-state":
        return REGRESSIONS / "lock-in-runtime-state.itf.json"
    cfg = Config()
    return write_walk(tmp_path / "stale.itf.json", cfg, walk_from_labels(cfg, STALE_REPORT),
                      "a stale report delivered late")


@pytest.mark.parametrize(("mutant", "label"), [
    # the start saga's undo writes the runtime back with the lock columns it read earlier
    ("lock-in-runtime-state", "instance-start.MARK_AS_STARTING.undo"),
    # the late report's older generation overwrites the newer VMM state
    ("reports-ignore-generation", "sled-agent.deliver_report"),
])
def test_racy_impl_defect_leaves_an_unexplained_history(tmp_path: Path, mutant: str,
                                                        label: str) -> None:
    """A defect that shows only in some interleavings: a free run with threads reaches the
    interleaving on some seeds only (docs/history-validation.md), so here the implementation
    is driven into it deterministically, with its history recorder on. The recorded history,
    validated on its own, must name an unexplained event; without the defect the same run
    records a history that validates."""
    trace = _racy_trace(tmp_path, mutant)
    clean = replay_with_history(load_itf(trace), str(trace), keep_dir=tmp_path / "clean")
    assert clean.ok, clean.mismatch()
    bad = replay_with_history(load_itf(trace), str(trace), impl_mutants=(mutant,),
                              keep_dir=tmp_path / "bad")
    assert bad.kept is not None
    res = validate(load(bad.kept))
    assert res.failure is not None
    r = runner.invoke(app, ["validate", str(bad.kept)])
    assert r.exit_code == 1 and "unexplained" in r.output, r.output
    # the event the validator names is the write the defect changed
    assert res.failure.label == label, res.failure.summary()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_longer_free_runs_validate_sqlite(tmp_path: Path, seed: int) -> None:
    p = tmp_path / "free.jsonl"
    record_free_run(p, backend("sqlite"), "rfd486" if seed % 2 else "baseline", seed=seed,
                    instances=6, ops=400)
    res = validate(load(p))
    assert res.failure is None, res.failure


@pytest.mark.postgres
def test_free_run_history_validates_postgres(tmp_path: Path) -> None:
    if pg_url() is None:
        pytest.skip(PG_SKIP_REASON)
    p = tmp_path / "free-pg.jsonl"
    n, stats = record_free_run(p, backend("postgres"), seed=2, instances=4, ops=150)
    assert n > 10, stats  # threads: how many writes land varies from run to run
    h = load(p)
    assert h.engine == "postgresql"
    res = validate(h)
    assert res.failure is None, res.failure


def test_describe_values_outside_the_enum() -> None:
    """Z3 may give an unconstrained state variable any value of its width; the failure
    report must still print it."""
    from conformance.refinement import describe
    from model.vocab import VmmState

    assert describe("v_state.1", int(VmmState.RUNNING)) == "RUNNING"
    assert describe("v_state.1", 18) == "18 (not a VmmState)"
    assert describe("i_state", 9) == "9 (not a InstanceState)"
    assert describe("m_tgt_st.0", 31) == "31 (not a MigrationState)"


HISTORIES = Path(__file__).parent / "histories"


def test_reexecuted_set_migration_ids_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    """A free run (seed 6, 8 instances, 400 requests; one instance's events kept) in which
    SET_MIGRATION_IDS crashed after its write and was re-executed: generation 3 -> 4 -> 5
    (SPEC §4.4 (b) bumps again). The file predates `#n` execution numbers in keys, so both
    writes share a key and were joined into one step 3 -> 5 that no single model step makes;
    the validator now cuts such a legacy join into its executions."""
    import conformance.validate as v

    h = load(HISTORIES / "set-migration-ids-reexecuted.jsonl")
    res = validate(h)
    assert res.failure is None, res.failure
    monkeypatch.setattr(v, "legacy_join", lambda step: False)
    f = validate(h).failure
    assert f is not None and f.label == "instance-migrate.SET_MIGRATION_IDS"
    assert f.first.seq == 74 and f.event.seq == 75
    # one generation apart either way (Optimize picks one of the two nearest steps)
    assert [row[0] for row in f.diff] == ["i_gen"], f.diff


def test_reexecuted_undo_is_a_step_of_its_own(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A free run (seed 7, 8 instances, 400 requests; one instance's events kept) recorded
    with execution numbers: CREATE_MIGRATION_RECORD's undo (`migration_mark_failed`, each
    side's generation + 1 with no condition, SPEC §4.4) crashed after its write and ran again
    (generations 1 -> 2 -> 3), keys `.../undo#1` and `.../undo#2`. Without the numbers the
    two runs would be joined into one step no model step makes."""
    import re

    import conformance.validate as v

    src = HISTORIES / "migration-undo-reexecuted.jsonl"
    assert validate(load(src)).failure is None
    legacy = tmp_path / "legacy.jsonl"
    legacy.write_text(re.sub(r'("key": "[^"]*)#\d+"', r'\1"', src.read_text()))
    monkeypatch.setattr(v, "legacy_join", lambda step: False)
    f = validate(load(legacy)).failure
    assert f is not None and f.label == "instance-migrate.CREATE_MIGRATION_RECORD.undo"
    assert (f.first.seq, f.event.seq) == (202, 204)


def test_reexecuted_node_gets_a_new_execution_number() -> None:
    """Keys name one execution: the members of a node group continue it, running a member
    again (after a crash) starts the next one; undos go in reverse member order."""
    from types import FrameType

    from impl.history import Executions

    def frame() -> FrameType:
        return sys._getframe()

    ex = Executions()
    f1, f2, f3, f4 = frame(), frame(), frame(), frame()
    assert ex.number("s/G/forward", f1, 3, "forward") == 1
    assert ex.number("s/G/forward", f1, 3, "forward") == 1  # a second transaction, same call
    assert ex.number("s/G/forward", f2, 4, "forward") == 1  # the group's next member
    assert ex.number("s/G/forward", f3, 4, "forward") == 2  # re-executed after a crash
    assert ex.number("s/G/forward", f4, 4, "finish") == 2  # finishing after a child saga
    u1, u2, u3 = frame(), frame(), frame()
    assert ex.number("s/G/undo", u1, 4, "undo") == 1
    assert ex.number("s/G/undo", u2, 3, "undo") == 1
    assert ex.number("s/G/undo", u3, 3, "undo") == 2


def test_fast_explains_agrees_with_the_one_piece_query() -> None:
    """`StepChecker.explains` rules out actions in Python and sends Z3 only the guard and
    writes of the rest; it must answer as the whole transition formula does, on recorded
    steps and on steps with one observed value after them changed."""
    from conformance.history_steps import appearance_order, project_values, steps_of
    from conformance.validate import StepChecker

    h = load(HISTORIES / "set-migration-ids-reexecuted.jsonl")
    res = validate(h)
    chk = StepChecker(res.config)  # a checker of its own: an empty memo
    seen: set[tuple[object, ...]] = set()
    asked = 0
    for evs in h.by_instance().values():
        for step in steps_of(evs, appearance_order(evs)):
            pre, post = project_values(step, res.config.vmms, res.config.migrations)
            variants = [post] + [post[:k] + (post[k] + 1,) + post[k + 1:]  # type: ignore[operator]
                                 for k in (0, 1, 8, 9) if not isinstance(post[k], bool)]
            for label in {step.label, "unknown"}:
                for b in variants:
                    if pre == b or (pre, b, label) in seen:
                        continue
                    seen.add((pre, b, label))
                    asked += 1
                    assert chk.explains(pre, b, label) == chk.explains_reference(pre, b, label), (
                        step.first.seq, label, b)
    assert asked > 100


def test_recorded_free_runs_stay_within_the_validators_slot_bound() -> None:
    """The free-run driver that records histories stops starting or migrating an instance at
    the validator's VMM slot bound; the two constants must agree."""
    from conformance.history_run import VMM_BOUND
    from conformance.validate import MAX_SLOTS

    assert VMM_BOUND == MAX_SLOTS


def test_watcher_write_after_the_instance_was_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A free run (rfd486, seed 3, 6 instances, 400 requests) in which the instance-watcher
    listed a VMM while its instance was alive, and wrote the VMM Failed after the instance
    was deleted (SPEC §4.9: list, then ask the sled, then notify, in separate transactions).
    The model's poll is one step and needs a live instance; the known history divergence
    `watcher-acts-on-stale-list` explains the late write as the guarded VMM write of a
    report, and without it the step is unexplained."""
    import conformance.validate as v

    h = load(HISTORIES / "watcher-stale-list.jsonl")
    res = validate(h)
    assert res.failure is None, res.failure
    assert res.divergences["watcher-acts-on-stale-list"] == 1
    monkeypatch.setattr(v, "alternatives", lambda revision, label: [])
    f = validate(h).failure
    assert f is not None and f.label == "instance-watcher" and f.event.seq == 93


def test_fetch_unlock_after_a_newer_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """A free run (baseline, seed 13, 6 instances, 400 requests): FETCH_STATE_AND_START_REAL_SAGA
    read a snapshot with nothing to do, then a report wrote the active VMM Destroyed, then the
    node's unlock ran (SPEC §4.6 node 3: read and unlock are separate queries). The model's
    node reads and unlocks in one step; the known divergence `fetch-unlocks-on-stale-snapshot`
    explains the late write as the holder-checked unlock, and without it the step is
    unexplained."""
    import conformance.validate as v

    h = load(HISTORIES / "fetch-unlocks-on-stale-snapshot.jsonl")
    res = validate(h)
    assert res.failure is None, res.failure
    assert res.divergences["fetch-unlocks-on-stale-snapshot"] == 1
    orig = v.alternatives
    monkeypatch.setattr(v, "alternatives", lambda revision, label: [
        d for d in orig(revision, label) if d.name != "fetch-unlocks-on-stale-snapshot"])
    f = validate(h).failure
    assert f is not None and f.event.seq == 119
    assert f.label == "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA"
