"""Replay a trace with the implementation's own history recorder on, then validate that history.

Replay (conformance/replay.py) checks the implementation against the model through the
refinement mapping after every step. History validation (conformance/validate.py) checks a
different thing with different means: that every database transaction the implementation
commits, as recorded by impl/history.py from the tables alone and labelled from the call
stack, is a transition of the model. Doing both on one run holds the two checks to each
other: a replay that conforms step by step must also leave a history every step of which the
model explains, including the transactions the implementation makes while it settles on its
own after the last step.

Recording reads every lifecycle record after every transaction, so a replay with it is about
four times slower than a plain one; `lifecycle traces replay --validate-history` and
`lifecycle conformance` turn it on, plain replays leave it off.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from model.trace import LoadedTrace

from .history_file import HistoryError, load
from .replay import Mismatch, ReplayResult, replay_trace
from .validate import Result, validate


@dataclass
class HistoryCheck:
    """A replay with recording on, and the verdict on the history it recorded."""

    replay: ReplayResult
    history: Result | None  # None when the history could not be read
    kept: Path | None  # where the history file was kept (on failure, or when asked)
    error: str = ""  # why the history could not be read

    @property
    def ok(self) -> bool:
        return self.replay.ok and not self.error and self.history is not None and \
            self.history.failure is None

    @property
    def events(self) -> int:
        return self.history.events if self.history is not None else 0

    def mismatch(self) -> Mismatch | None:
        """The replay's own mismatch, else the first unexplained event as a mismatch."""
        if self.replay.mismatch is not None:
            return self.replay.mismatch
        rerun = f"lifecycle validate {self.kept}" if self.kept else ""
        if self.error:
            return Mismatch(self.replay.steps, "history of the replay", {}, self.error, rerun)
        if self.history is None or self.history.failure is None:
            return None
        return Mismatch(self.replay.steps, "history of the replay", {},
                        self.history.failure.summary(), rerun)


def keep(file: Path, keep_dir: Path | None = None) -> Path:
    """Copy a recorded history out of a directory about to be removed: into `keep_dir`
    (created if needed), or else into a fresh temporary directory; returns the copy."""
    if keep_dir is None:
        keep_dir = Path(tempfile.mkdtemp(prefix="lc_history_"))
    keep_dir.mkdir(parents=True, exist_ok=True)
    kept = keep_dir / file.name
    shutil.copyfile(file, kept)
    return kept


def replay_with_history(trace: LoadedTrace, path: str = "<trace>", db_url: str = "sqlite://",
                        pg_schema: str | None = None,
                        impl_mutants: tuple[str, ...] | None = None,
                        keep_dir: Path | None = None) -> HistoryCheck:
    """Replay `trace` with the history recorder on and validate the recorded history against
    the trace's own revision. The history file is kept in `keep_dir` (created if needed) when
    one is given, and otherwise only when validation fails (in a fresh temporary directory,
    named in the result), so that the failure can be rerun with `lifecycle validate`."""
    tmp = Path(tempfile.mkdtemp(prefix="lc_replay_history_"))
    name = (Path(path).name.removesuffix(".itf.json") if path != "<trace>" else "trace")
    file = tmp / f"{name}.history.jsonl"
    try:
        res = replay_trace(trace, path, db_url, pg_schema, impl_mutants, history=file)
        try:
            verdict: Result | None = validate(load(file), trace.cfg.revision)
            error = ""
        except (HistoryError, TypeError, ValueError, KeyError) as e:
            verdict, error = None, f"the recorded history cannot be read: {e}"
        failed = error != "" or (verdict is not None and verdict.failure is not None)
        kept = keep(file, keep_dir) if keep_dir is not None or failed else None
        return HistoryCheck(res, verdict, kept, error)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
