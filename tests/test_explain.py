"""`lifecycle explain`: a trace file as a sequence diagram and a table of changed fields."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.explain_cmd import explain
from lifecycle.scenarios import r1_double_release
from lifecycle.sequence_diagram import DATABASE, field_lane, step_views
from model.actions import model_for
from model.explore import explorer_config
from model.trace import load_itf


@pytest.fixture(scope="module")
def r1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return r1_double_release(tmp_path_factory.mktemp("r1") / "r1.itf.json")


def test_r1_scenario_replays_and_violates_its_invariant(r1: Path) -> None:
    result = CliRunner().invoke(app, ["replay", str(r1)])
    assert result.exit_code == 1, result.output
    assert "active_vms_have_resources is violated" in result.output


def test_sequence_diagram_shows_the_double_release(r1: Path, tmp_path: Path) -> None:
    written, _, title = explain(r1, tmp_path, ("dot",), show_seed=False)
    dot = next(p for p in written if p.suffix == ".dot").read_text()
    # two releases of the charge (1 -> 0) drawn from two different update sagas to the DB
    releases = [ln for ln in dot.splitlines() if "prov_cnt: 1 → 0" in ln]
    assert len(releases) == 2
    lanes = {ln.split(" -> ")[0].strip().split("_")[0] for ln in releases}
    assert len(lanes) == 2
    assert all("red3" in ln for ln in releases)
    assert "violated at step" in title


def test_lanes_cover_actors_and_the_database(r1: Path) -> None:
    lt = load_itf(r1)
    model = model_for(lt.cfg)
    views = step_views(model, lt.labels, lt.states, lt.seed_len)
    lanes = {v.actor for v in views} | {lane for v in views for lane in v.changes}
    for expected in ("user", "instance-start#0", "start-instance-update#0",
                     "start-instance-update#1", "instance-update#0", "instance-update#1",
                     "sled-agent(vmm0)", "instance-updater", DATABASE):
        assert expected in lanes
    assert sum(v.in_seed for v in views) == lt.seed_len


def test_field_owners() -> None:
    model = model_for(explorer_config("baseline"))
    s = model.layout.fresh_state()
    assert field_lane("prov_cnt", s) == DATABASE
    assert field_lane("v_state.1", s) == DATABASE
    assert field_lane("sa_state.1", s) == "sled-agent(vmm1)"
    assert field_lane("uc_pc.0", s) == "instance-update#0"
    assert field_lane("cr_pc", s) == "instance-create"
    assert field_lane("next_uuid", s) is None


def test_changes_table_lists_every_step(r1: Path, tmp_path: Path) -> None:
    written, table, _ = explain(r1, tmp_path, ("dot",), show_seed=True)
    md = next(p for p in written if p.suffix == ".md").read_text()
    lt = load_itf(r1)
    assert md.count("\n| ") - 1 == len(lt.labels)  # header row excluded
    assert table.row_count == len(lt.labels)
    assert "prov_cnt: 0 → 1" in md


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
def test_cli_explain_renders_svg(r1: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["explain", str(r1), "--out", str(tmp_path),
                                      "-f", "svg", "--no-seed"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r1.sequence.svg").exists()


def test_cli_explain_refuses_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.itf.json"
    bad.write_text("{}")
    result = CliRunner().invoke(app, ["explain", str(bad), "--out", str(tmp_path)])
    assert result.exit_code == 2


COMMITTED = Path(__file__).resolve().parents[1] / "diagrams" / "explain"


@pytest.mark.parametrize("trace", sorted(p.name for p in COMMITTED.glob("*.itf.json")))
def test_committed_sequence_diagrams_match(trace: str, tmp_path: Path) -> None:
    """diagrams/explain/ holds `lifecycle explain --no-seed` output; it must be current."""
    written, _, _ = explain(COMMITTED / trace, tmp_path, ("dot",), show_seed=False)
    for p in written:
        assert (COMMITTED / p.name).read_text() == p.read_text(), (
            f"{p.name} is stale: rerun `lifecycle explain {trace} --out diagrams/explain "
            "--no-seed`")
