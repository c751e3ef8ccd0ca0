"""Replays with the implementation's own history recorder on (conformance/replay_history.py):
the recorded history of a conforming replay validates, and a history the model does not
explain fails the replay with the event, the reason and a kept file to rerun."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import impl.history
from conformance.history_file import load
from conformance.replay_history import replay_with_history
from conformance.validate import validate
from lifecycle.cli import app
from model.trace import load_itf

TRACES = sorted((Path(__file__).parent / "traces").glob("*.itf.json"))


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.name)
def test_the_history_of_a_conforming_replay_validates(path: Path, tmp_path: Path) -> None:
    chk = replay_with_history(load_itf(path), str(path), keep_dir=tmp_path)
    assert chk.replay.ok and chk.ok, chk.mismatch()
    assert chk.history is not None and chk.history.steps > 0
    assert chk.kept is not None and chk.kept.parent == tmp_path
    # the kept file is the one validated: same events, same verdict again
    again = validate(load(chk.kept))
    assert again.events == chk.events and again.failure is None


def test_a_history_the_model_does_not_explain_fails_the_replay(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorder labels the update saga's commit as a user stop request: the replay itself
    still conforms (it compares states, not labels), the history check must not."""
    real = impl.history.current_action

    def mislabel(*args: Any) -> tuple[str, str, str | None]:
        label, key, hint = real(*args)
        if label.endswith("COMMIT_INSTANCE_UPDATES"):
            label = "user.instance_stop"
        return label, key, hint

    monkeypatch.setattr(impl.history, "current_action", mislabel)
    path = Path(__file__).parent / "traces" / "update-saga-panics.itf.json"
    chk = replay_with_history(load_itf(path), str(path))
    assert chk.replay.ok
    assert not chk.ok
    mm = chk.mismatch()
    assert mm is not None and mm.label == "history of the replay"
    assert "(user.instance_stop) is not a transition of the model" in mm.note
    assert chk.kept is not None and chk.kept.exists()
    assert mm.rerun == f"lifecycle validate {chk.kept}"
    lines = [json.loads(x) for x in chk.kept.read_text().splitlines()[1:]]
    assert any(ev["label"] == "user.instance_stop" for ev in lines)


def test_replay_command_validates_histories(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["traces", "replay", *map(str, TRACES), "--validate-history",
                                   "--keep-history", str(tmp_path)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert f"{len(TRACES)}/{len(TRACES)} traces replayed without mismatch" in res.output
    assert "recorded events validated" in res.output
    assert len(list(tmp_path.glob("*.history.jsonl"))) == len(TRACES)
