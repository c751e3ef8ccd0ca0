"""State diagrams: deterministic DOT, the committed files match the model, coverage styling,
and the two revisions differ where SPEC §3 and §10 say they do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lifecycle.diagrams_cmd import generate
from lifecycle.dot import DotMissing, render
from lifecycle.state_diagrams import Coverage, all_diagrams, diagram_dot, load_coverage
from model.actions import model_for
from model.explore import Exploration, explore, explorer_config
from model.projections import (
    EXTERNAL_STATE,
    PROJECTIONS,
    differences,
    external_state_of,
    project_exploration,
)
from model.state import NONE
from model.vocab import ExternalState, InstanceState, VmmState

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "diagrams"
MAX_NODES = 30


@pytest.fixture(scope="module")
def small() -> dict[str, Exploration]:
    return {r: explore(explorer_config(r), depth=3) for r in ("baseline", "rfd486")}


@pytest.fixture(scope="module")
def full() -> dict[str, Exploration]:
    return {r: explore(explorer_config(r)) for r in ("baseline", "rfd486")}


def test_dot_is_deterministic(small: dict[str, Exploration]) -> None:
    ex = small["baseline"]
    again = explore(explorer_config("baseline"), depth=3)
    assert all_diagrams(ex) == all_diagrams(again)


def test_every_edge_has_a_label_and_nodes_stay_readable(small: dict[str, Exploration]) -> None:
    for ex in small.values():
        for p in PROJECTIONS:
            d = project_exploration(p, ex)
            assert 0 < len(d.nodes) <= MAX_NODES, p.name
            assert d.edges, p.name
            assert all(labels for labels in d.edges.values())
            text = diagram_dot(d, ex)
            assert text.count(" -> ") == len(d.edges)


def test_coverage_draws_uncovered_edges_dashed(small: dict[str, Exploration],
                                                tmp_path: Path) -> None:
    ex = small["baseline"]
    d = project_exploration(EXTERNAL_STATE, ex)
    name = "sled-agent.deliver_report"
    cov_file = tmp_path / "coverage.json"
    cov_file.write_text(json.dumps({"format": "lifecycle-coverage/1", "revision": "baseline",
                                    "actions": [name]}))
    text = diagram_dot(d, ex, load_coverage(cov_file))
    edge_lines = [ln for ln in text.splitlines() if " -> " in ln]
    solid = [ln for ln in edge_lines if "dashed" not in ln]
    expected = [e for e, labels in d.edges.items() if name in labels]
    assert 0 < len(expected) < len(d.edges)
    assert len(solid) == len(expected) and all(name in ln for ln in solid)
    assert len(edge_lines) == len(d.edges)


def test_coverage_from_a_trace_marks_the_edges_it_takes(small: dict[str, Exploration],
                                                        tmp_path: Path) -> None:
    trace = (Path(__file__).resolve().parents[1] / "diagrams" / "explain" / "double-release"
             / "baseline-no-updater-lock--active_vms_have_resources.itf.json")
    cov = Coverage("baseline", traces=[trace])
    ex = small["baseline"]
    d = project_exploration(EXTERNAL_STATE, ex)
    taken = cov.edges_from_traces(d)
    assert ("Stopped", "Starting") in taken and ("Running", "Stopping") in taken
    assert cov.covered(d, ex, ("Stopped", "Starting"))


def test_bad_coverage_file_is_refused(tmp_path: Path) -> None:
    from lifecycle.state_diagrams import CoverageError

    f = tmp_path / "c.json"
    f.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CoverageError, match="format"):
        load_coverage(f)


def test_missing_graphviz_gives_a_clear_error(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "x.dot"
    p.write_text("digraph x { a -> b; }\n")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DotMissing, match="install graphviz"):
        render(p, "svg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
def test_generate_writes_dot_and_svg(tmp_path: Path) -> None:
    written, summary = generate("rfd486", tmp_path, ("dot", "svg"), depth=1)
    names = sorted(p.name for p in written)
    assert names == sorted([f"{p.name}.dot" for p in PROJECTIONS]
                           + [f"{p.name}.svg" for p in PROJECTIONS])
    assert (tmp_path / "rfd486" / "external_state.svg").read_text().lstrip().startswith("<")
    assert "rfd486" in summary


def _active_vmm_state(revision: str, i: InstanceState, v: VmmState) -> ExternalState:
    model = model_for(explorer_config(revision))
    s = model.layout.fresh_state()
    s.update({"i_state": int(i), "i_active": 0, "v_alloc.0": True, "v_state.0": int(v),
              "i_mig": NONE})
    return external_state_of(model, s)


def test_saga_unwound_active_vmm_is_stopped_at_baseline_and_failed_in_rfd486() -> None:
    """SPEC §3 row 3 and Δ #6669: the diagrams' node for such a state differs."""
    args = (InstanceState.VMM, VmmState.SAGA_UNWOUND)
    assert _active_vmm_state("baseline", *args) == ExternalState.STOPPED
    assert _active_vmm_state("rfd486", *args) == ExternalState.FAILED


def test_failed_active_vmm_is_failed_at_baseline_and_stopping_in_rfd486() -> None:
    """SPEC §3 row 3b and Δ #6455."""
    args = (InstanceState.VMM, VmmState.FAILED)
    assert _active_vmm_state("baseline", *args) == ExternalState.FAILED
    assert _active_vmm_state("rfd486", *args) == ExternalState.STOPPING


# Where SPEC §3/§4/§10 say the revisions behave differently, as seen in the external-state
# diagram. Each rule: (SPEC reference, predicate over a Difference).
def _mentions_failed(item: str) -> bool:
    return "Failed" in item


EXTERNAL_RULES = [
    ("Δ #6455: VMMs are created in Creating, shown as Starting",
     lambda d: d.only_in == "rfd486" and "Vmm + Creating" in d.item),
    ("Δ #6455: the instance-watcher makes up a Failed report for a vanished VMM",
     lambda d: d.only_in == "rfd486" and d.item.endswith("instance-watcher.vmm_gone")),
    ("§4.3 step 4, Δ #6455: a reboot (like a stop) answered 404 marks the VMM Failed, which "
     "rfd486 shows as Stopping",
     lambda d: d.only_in == "rfd486" and d.kind == "label"
     and d.item.endswith("-> Stopping: user.instance_reboot")),
    ("Δ #6455 unconditional SagaUnwound write, Δ #6669 SagaUnwound shown as Failed: an "
     "unwound start leaves (Vmm, SagaUnwound), which the update saga exposes as Failed",
     lambda d: d.only_in == "rfd486" and ("SagaUnwound" in d.item
                                          or d.item.startswith("Migrating -> Failed: "))),
    ("§7 G3 (baseline): the same unwinding leaves the VMM live, since the SagaUnwound write is "
     "guarded by the VMM generation, so the update saga exposes the VMM's own state",
     lambda d: d.only_in == "baseline" and d.kind == "edge" and d.item.startswith("Migrating -> ")),
    ("§3 row 3b / Δ #6455: (Vmm, Failed) is Failed at baseline, Stopping in rfd486; "
     "§4.10: baseline mark_instance_failed makes the instance Failed at once",
     lambda d: _mentions_failed(d.item)),
    ("§7 Q1 (baseline): mark_instance_failed keeps migration_id, so a deleted instance can "
     "still carry it", lambda d: d.only_in == "baseline" and d.kind == "detail"
     and d.item.startswith("Destroyed:") and "migration id set" in d.item),
]


@pytest.mark.slow
def test_external_state_diagrams_differ_exactly_where_the_spec_says(
        full: dict[str, Exploration]) -> None:
    a = project_exploration(EXTERNAL_STATE, full["baseline"])
    b = project_exploration(EXTERNAL_STATE, full["rfd486"])
    diffs = differences(a, "baseline", b, "rfd486")
    unexplained = [d for d in diffs if not any(rule(d) for _, rule in EXTERNAL_RULES)]
    assert not unexplained, unexplained
    used = {ref for ref, rule in EXTERNAL_RULES for d in diffs if rule(d)}
    assert used == {ref for ref, _ in EXTERNAL_RULES}  # every SPEC difference shows up
    # the specific SPEC examples
    assert "Vmm + Failed" in b.nodes["Stopping"] and "Vmm + Failed" in a.nodes["Failed"]
    assert "Vmm + Failed" not in a.nodes["Stopping"]
    assert "Vmm + SagaUnwound" in b.nodes["Failed"]
    assert not any("SagaUnwound" in det for dets in a.nodes.values() for det in dets)


@pytest.mark.slow
def test_vmm_state_diagram_has_creating_only_in_rfd486(full: dict[str, Exploration]) -> None:
    from model.projections import VMM_STATE

    a = project_exploration(VMM_STATE, full["baseline"])
    b = project_exploration(VMM_STATE, full["rfd486"])
    assert "Creating" in b.nodes and "Creating" not in a.nodes
    assert ("no row", "Creating") in b.edges and ("no row", "Starting") in a.edges
    gone = {lab for labels in b.edges.values() for lab in labels}
    assert "instance-watcher.vmm_gone" in gone
    assert "instance-watcher.vmm_gone" not in {lab for ls in a.edges.values() for lab in ls}


@pytest.mark.slow
def test_committed_dot_files_match_the_model(full: dict[str, Exploration]) -> None:
    """CI's drift check: regenerate the DOT text and compare it byte for byte (SVG and PNG
    depend on the Graphviz version and are not compared)."""
    for rev, ex in full.items():
        for name, text in all_diagrams(ex).items():
            path = COMMITTED / rev / f"{name}.dot"
            assert path.exists(), f"{path} is missing: run `lifecycle diagrams`"
            assert path.read_text() == text, (
                f"{path} differs from the model: run `lifecycle diagrams` and commit")


def test_cli_diagrams_writes_dot_only_when_asked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lifecycle.cli import app

    r = CliRunner().invoke(app, ["diagrams", "-r", "rfd486", "--out", str(tmp_path),
                                 "--format", "dot", "--depth", "1"])
    assert r.exit_code == 0, r.output
    written = sorted(p.name for p in (tmp_path / "rfd486").iterdir())
    assert written == sorted(f"{p.name}.dot" for p in PROJECTIONS)


def test_cli_diagrams_rejects_a_bad_format_and_reports_the_state_cap(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lifecycle.cli import app

    r = CliRunner().invoke(app, ["diagrams", "--out", str(tmp_path), "--format", "jpeg"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["diagrams", "-r", "baseline", "--out", str(tmp_path),
                                 "--format", "dot", "--max-states", "20"])
    assert r.exit_code == 1
    assert "more than 20 distinct states" in r.output


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_committed_diagrams_are_readable(revision: str) -> None:
    for p in PROJECTIONS:
        text = (COMMITTED / revision / f"{p.name}.dot").read_text()
        lines = text.splitlines()
        nodes = [ln for ln in lines if ln.lstrip().startswith("n") and " -> " not in ln
                 and "[label=" in ln]
        edges = [ln for ln in lines if " -> " in ln]
        assert 0 < len(nodes) <= MAX_NODES, p.name
        assert edges and all('label="' in ln and 'label=""' not in ln for ln in edges)
