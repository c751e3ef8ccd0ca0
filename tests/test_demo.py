"""`lifecycle demo`: the scripted lifecycle walks the external states of SPEC §3 in order."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from lifecycle.cli import app


def test_demo_walks_the_lifecycle() -> None:
    res = CliRunner().invoke(app, ["demo"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    states = re.findall(r"external state (\w+)", res.output)
    assert states == ["stopped", "starting", "running", "migrating", "running", "stopping",
                      "stopped", "destroyed"]
    assert re.search(r"ok: \d+ SQL statements", res.output)
