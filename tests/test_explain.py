"""`lifecycle explain`: a trace file as a sequence diagram and a table of changed fields."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.explain_cmd import explain
from lifecycle.sequence_diagram import DATABASE, field_lane, step_views
from model.actions import model_for
from model.explore import explorer_config
from model.trace import load_itf

COMMITTED = Path(__file__).resolve().parents[1] / "diagrams" / "explain"
# written by `lifecycle verify -r baseline -m no-updater-lock -i active_vms_have_resources
# --seed stopping --depth 13 --trace-dir diagrams/explain/double-release` (see docs/diagrams.md)
DOUBLE_RELEASE = (COMMITTED / "double-release"
                  / "baseline-no-updater-lock--active_vms_have_resources.itf.json")


@pytest.fixture(scope="module")
def r1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checker's double-release counterexample, copied under a short name."""
    dst = tmp_path_factory.mktemp("r1") / "r1.itf.json"
    shutil.copy(DOUBLE_RELEASE, dst)
    return dst


def test_double_release_trace_replays_and_violates_its_invariant(r1: Path) -> None:
    result = CliRunner().invoke(app, ["replay", str(r1)])
    assert result.exit_code == 1, result.output
    assert "active_vms_have_resources is violated" in result.output


def test_sequence_diagram_shows_the_double_release(r1: Path, tmp_path: Path) -> None:
    written, _, title = explain(r1, tmp_path, ("dot",), show_seed=False)
    dot = next(p for p in written if p.suffix == ".dot").read_text()
    # two releases of the charge (1 -> 0) drawn from two different update sagas to the DB
    releases = _releases(dot)
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
                     "instance-update#0", "instance-update#1", "sled-agent(vmm0)",
                     "sled-agent(vmm1)", DATABASE):
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


@pytest.mark.parametrize(
    "trace", sorted(str(p.relative_to(COMMITTED)) for p in COMMITTED.rglob("*.itf.json")))
def test_committed_sequence_diagrams_match(trace: str, tmp_path: Path) -> None:
    """diagrams/explain/ holds `lifecycle explain --no-seed` output; it must be current."""
    src = COMMITTED / trace
    written, _, _ = explain(src, tmp_path, ("dot",), show_seed=False)
    for p in written:
        assert (src.parent / p.name).read_text() == p.read_text(), (
            f"{p.name} is stale: rerun `lifecycle explain {src.relative_to(COMMITTED.parent.parent)} "
            f"--out {src.parent.relative_to(COMMITTED.parent.parent)} --no-seed`")


def _releases(dot: str) -> list[str]:
    """Arrows that lower the provisioning counter from 1 to 0."""
    return [ln for ln in dot.splitlines() if "prov_cnt: 1 → 0" in ln]


@pytest.mark.slow
def test_checker_finds_the_double_release(tmp_path: Path) -> None:
    """The checker itself (not a hand-written scenario) finds the R1 race of SPEC §7: with
    the lock gone, two update sagas release the charge, the second after a restart charged
    it again. Pinned: 13 steps after the `stopping` seed is the shortest such trace."""
    out = tmp_path / "traces"
    result = CliRunner().invoke(app, [
        "verify", "-r", "baseline", "-m", "no-updater-lock", "-i", "active_vms_have_resources",
        "--seed", "stopping", "--depth", "13", "--trace-dir", str(out)])
    assert result.exit_code == 1, result.output
    trace = out / "baseline-no-updater-lock--active_vms_have_resources.itf.json"
    lt = load_itf(trace)
    assert len(lt.labels) - lt.seed_len == 13
    written, _, title = explain(trace, tmp_path, ("dot",), show_seed=False)
    dot = next(p for p in written if p.suffix == ".dot").read_text()
    releases = _releases(dot)
    assert len(releases) == 2, releases
    assert len({ln.split(" -> ")[0].strip().split("_")[0] for ln in releases}) == 2
    assert "violated at step" in title
