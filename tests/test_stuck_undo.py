"""A start saga whose undo of ENSURE_REGISTERED meets an unhealthy sled is stuck (SPEC "Saga
semantics (Steno)", §4.2 node 8, §4.10).

The opt-in fault class `Config.stuck_undos` gives that undo the outcome `undo-unhealthy`: the
sled unregisters nothing, the baseline marks the instance Failed, and the saga is stuck (mode
`STUCK`) with what it still holds. The default model is unchanged. The path below runs the
start saga to ENSURE_REGISTERED, fails ADD_VIRTUAL_RESOURCES (nothing charged), and meets the
unhealthy sled in the first undo that talks to a sled."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.generate import walk_from_labels, write_walk
from conformance.replay import replay_trace
from conformance.scenarios import START_UNDO_UNHEALTHY as STUCK_PATH
from model.actions import model_for
from model.bmc import verify
from model.state import NONE, STUCK, UNWIND, Config
from model.step import successors
from model.trace import load_itf
from model.vocab import InstanceState

REVISIONS = ["baseline", "rfd486"]


def _trace(tmp_path: Path, revision: str) -> Path:
    cfg = Config(revision=revision, stuck_undos=True)
    return write_walk(tmp_path / f"stuck-{revision}.itf.json", cfg,
                      walk_from_labels(cfg, STUCK_PATH), "stuck-undo")


@pytest.mark.parametrize("revision", REVISIONS)
def test_the_outcome_exists_only_when_opted_in(revision: str) -> None:
    def stuck_labels(cfg: Config) -> list[str]:
        return [a.label for a in model_for(cfg).actions if a.arg("outcome") == "undo-unhealthy"]

    assert stuck_labels(Config(revision=revision)) == []
    assert stuck_labels(Config(revision=revision, stuck_undos=True)) == [
        f"instance-start.ENSURE_REGISTERED.undo(saga={s}, outcome=undo-unhealthy)"
        for s in (0, 1)]
    plain = model_for(Config(revision=revision)).actions
    opted = model_for(Config(revision=revision, stuck_undos=True)).actions
    assert len(opted) == len(plain) + 2  # nothing else changes
    assert [a.label for a in opted if a.arg("outcome") != "undo-unhealthy"] == \
        [a.label for a in plain]


@pytest.mark.parametrize("revision", REVISIONS)
def test_the_model_leaves_the_saga_stuck(tmp_path: Path, revision: str) -> None:
    t = load_itf(_trace(tmp_path, revision))
    assert t.cfg.stuck_undos  # the trace file records the opt-in
    before, after = t.states[-2], t.states[-1]
    assert before["st_mode.0"] == UNWIND and after["st_mode.0"] == STUCK
    assert after["sa_state.0"] == before["sa_state.0"]  # the sled unregistered nothing
    assert after["v_res.0"] and not after["prov_row"]  # reservation held, charge undone
    if revision == "baseline":  # mark_instance_failed (§4.10)
        assert after["i_state"] == InstanceState.FAILED and after["i_active"] == NONE
        assert after["i_gen"] == before["i_gen"] + 1
    else:  # Δ #6455: nothing is marked failed; the instance still names the VMM
        assert after["i_state"] == before["i_state"] and after["i_active"] == 0
    # no action of the stuck saga is ever enabled again, and its slot stays taken
    model = model_for(t.cfg)
    nexts = [model.actions[i] for i, _ in successors(model, after)]
    assert nexts and not [a for a in nexts if a.actor == "instance-start#0"]
    assert all(a.arg("saga") != 0 for a in nexts if a.name == "user.instance_start")


def test_default_traces_do_not_mention_the_opt_in(tmp_path: Path) -> None:
    cfg = Config(revision="baseline")
    p = write_walk(tmp_path / "plain.itf.json", cfg, walk_from_labels(cfg, STUCK_PATH[:8]),
                   "plain")
    assert "stuck_undos" not in p.read_text()
    assert not load_itf(p).cfg.stuck_undos


@pytest.mark.parametrize("revision", REVISIONS)
def test_the_implementation_gets_stuck_the_same_way(tmp_path: Path, revision: str) -> None:
    p = _trace(tmp_path, revision)
    res = replay_trace(load_itf(p), str(p))
    assert res.mismatch is None, res.mismatch.render()
    assert res.steps == len(STUCK_PATH)
    # settling afterwards may not apply the leak checks: the saga waits for an operator
    assert res.settle_excused and res.settle_excused[0].startswith("stuck saga (st_mode.0)")
    if revision == "rfd486":  # the instance still names the uncharged VMM
        assert any("no charge" in v for v in res.settle_excused[1:])


def test_replay_catches_an_undo_that_does_not_get_stuck(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An implementation whose undo swallows the unhealthy sled's error finishes unwinding;
    the model's saga is stuck, so replay must fail at that step."""
    from impl.errors import SledAgentError
    from impl.sagas import instance_start

    real = instance_start.undo_ensure_registered

    def swallowing(ctx: object) -> None:
        try:
            real(ctx)  # type: ignore[arg-type]
        except SledAgentError:
            return

    monkeypatch.setattr(instance_start, "undo_ensure_registered", swallowing)
    p = _trace(tmp_path, "baseline")
    res = replay_trace(load_itf(p), str(p))
    assert res.mismatch is not None and res.mismatch.step == len(STUCK_PATH)
    assert "the saga is stuck" in res.mismatch.render()


def test_z3_finds_the_rfd486_leak_from_the_starting_seed() -> None:
    """rfd486: the stuck saga leaves an active VMM without a charge, which breaks
    ActiveVmsHaveResources two steps after the `starting` seed (no finding explains it there:
    F5 needs the opt-in seed `start-outlived`); the baseline unlinks the VMM instead."""
    rep = verify(Config(revision="rfd486", stuck_undos=True), 3,
                 ["active_vms_have_resources"], seeds=["starting"])
    v = rep.verdicts["active_vms_have_resources"]
    assert v.status == "violated" and v.depth == 2
    assert v.trace is not None
    model = model_for(Config(revision="rfd486", stuck_undos=True))
    assert model.actions[v.trace.steps[-1].action].label == \
        "instance-start.ENSURE_REGISTERED.undo(saga=0, outcome=undo-unhealthy)"
    base = verify(Config(revision="baseline", stuck_undos=True), 3,
                  ["active_vms_have_resources"], seeds=["starting"])
    assert base.verdicts["active_vms_have_resources"].status == "holds"


def test_verify_command_takes_the_opt_in(tmp_path: Path) -> None:
    """`lifecycle verify --stuck-undos`: rfd486 fails with a replayable trace that records the
    opt-in; the baseline holds the same invariant; the JSON report names the fault class."""
    import json

    from typer.testing import CliRunner

    from lifecycle.cli import app

    runner = CliRunner()
    common = ["verify", "--stuck-undos", "-s", "starting", "-d", "3",
              "-i", "active_vms_have_resources", "--trace-dir", str(tmp_path)]
    r = runner.invoke(app, [*common, "-r", "rfd486", "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 1, r.output
    assert "faults=+stuck-undos" in r.output
    trace = tmp_path / "rfd486-stuck-undos--active_vms_have_resources.itf.json"
    assert load_itf(trace).cfg.stuck_undos
    doc = json.loads((tmp_path / "r.json").read_text())["revisions"]["rfd486"]
    assert doc["stuck_undos"] is True
    assert doc["verdicts"]["active_vms_have_resources"]["status"] == "violated"
    r = runner.invoke(app, ["replay", str(trace)])
    assert r.exit_code == 1 and "active_vms_have_resources" in r.output, r.output
    r = runner.invoke(app, [*common, "-r", "baseline"])
    assert r.exit_code == 0, r.output
