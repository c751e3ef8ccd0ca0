"""The `lifecycle` command: usage errors, reports, trace files and their replay."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lifecycle.cli import app

runner = CliRunner()


def test_mutants_lists_every_defect() -> None:
    r = runner.invoke(app, ["mutants"])
    assert r.exit_code == 0
    for name in ("no-updater-lock", "reports-ignore-generation", "no-background-updater"):
        assert name in r.output


def test_bad_names_exit_2_and_list_valid_ones() -> None:
    r = runner.invoke(app, ["verify", "--revision", "head"])
    assert r.exit_code == 2 and "baseline, rfd486" in r.output
    r = runner.invoke(app, ["verify", "--mutant", "typo"])
    assert r.exit_code == 2 and "no-updater-lock" in r.output
    r = runner.invoke(app, ["verify", "--invariant", "typo"])
    assert r.exit_code == 2 and "no_leaked_lock" in r.output
    r = runner.invoke(app, ["verify", "--depth", "0"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["verify", "--seed", "typo"])
    assert r.exit_code == 2 and "migration-unwound" in r.output
    r = runner.invoke(app, ["traces", "generate", "-r", "baseline", "-o", "unused",
                            "--z3-goal-rlimit", "-1"])
    assert r.exit_code == 2 and "--z3-goal-rlimit must not be negative" in r.output


def test_verify_from_one_seed_reports_only_that_seed(tmp_path: Path) -> None:
    js = tmp_path / "r.json"
    r = runner.invoke(app, ["verify", "-r", "baseline", "-d", "2", "-i", "no_leaked_lock",
                            "--seed", "running", "--json", str(js),
                            "--trace-dir", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    assert json.loads(js.read_text())["revisions"]["baseline"]["seeds"] == ["running"]


def test_verify_holds_writes_reports(tmp_path: Path) -> None:
    js, ju = tmp_path / "r.json", tmp_path / "j.xml"
    r = runner.invoke(app, ["verify", "-r", "rfd486", "-d", "2", "-i", "no_leaked_lock",
                            "-i", "counter_matches_rows", "--json", str(js), "--junit", str(ju),
                            "--trace-dir", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    doc = json.loads(js.read_text())
    v = doc["revisions"]["rfd486"]["verdicts"]
    assert v["no_leaked_lock"]["status"] == "holds" and v["no_leaked_lock"]["depth"] == 2
    assert "testcase" in ju.read_text()


def test_mutant_counterexample_is_written_and_replays(tmp_path: Path) -> None:
    r = runner.invoke(app, ["verify", "-r", "baseline", "-m", "reports-ignore-generation",
                            "-d", "3", "-i", "reports_apply_monotonically",
                            "--trace-dir", str(tmp_path)])
    assert r.exit_code == 1, r.output
    assert "counterexample: reports_apply_monotonically" in r.output
    files = list(tmp_path.glob("*.itf.json"))
    assert len(files) == 1
    doc = json.loads(files[0].read_text())
    assert doc["#meta"]["mutants"] == ["reports-ignore-generation"]
    assert doc["states"][1]["mbt::actionTaken"] == "instance-create.MOVE_TO_STOPPED"
    r2 = runner.invoke(app, ["replay", str(files[0])])
    assert r2.exit_code == 1 and "is violated at step" in r2.output


def test_replay_rejects_a_malformed_trace(tmp_path: Path) -> None:
    bad = tmp_path / "bad.itf.json"
    bad.write_text("{not json")
    r = runner.invoke(app, ["replay", str(bad)])
    assert r.exit_code == 2 and "not JSON" in r.output
    bad.write_text(json.dumps({"states": [], "#meta": {"model-revision": "other"}}))
    r = runner.invoke(app, ["replay", str(bad)])
    assert r.exit_code == 2 and "regenerate" in r.output


def test_replay_rejects_a_tampered_step(tmp_path: Path) -> None:
    runner.invoke(app, ["verify", "-r", "baseline", "-m", "reports-ignore-generation", "-d",
                        "3", "-i", "reports_apply_monotonically", "--trace-dir", str(tmp_path)])
    f = next(tmp_path.glob("*.itf.json"))
    doc = json.loads(f.read_text())
    doc["states"][-1]["i_gen"] += 9
    f.write_text(json.dumps(doc))
    r = runner.invoke(app, ["replay", str(f)])
    assert r.exit_code == 2 and "does not give the recorded state" in r.output


def test_unbounded_proves_some_invariants_for_every_depth(tmp_path: Path) -> None:
    js = tmp_path / "r.json"
    r = runner.invoke(app, ["verify", "-r", "rfd486", "-d", "1", "--unbounded", "--json",
                            str(js), "-i", "counter_matches_rows", "-i", "no_leaked_lock",
                            "--trace-dir", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    v = json.loads(js.read_text())["revisions"]["rfd486"]["verdicts"]
    assert v["counter_matches_rows"]["unbounded"] is True
    # not inductive on its own: needs companions Houdini cannot find alone
    assert v["no_leaked_lock"]["unbounded"] is False


def test_violation_of_an_out_of_scope_findings_invariant_counts(tmp_path: Path) -> None:
    """`no_dangling_vmm_refs` is also the invariant of finding F2, which the default seeds
    cannot meet within the default depth. With `delete-vmm-before-commit` it breaks at depth
    5: that is the defect caught (exit 1), not the finding."""
    r = runner.invoke(app, ["verify", "-r", "baseline", "-m", "delete-vmm-before-commit",
                            "-i", "no_dangling_vmm_refs", "--first",
                            "--trace-dir", str(tmp_path)])
    assert r.exit_code == 1, r.output
    assert "counterexample: no_dangling_vmm_refs" in r.output
    assert "F2" not in r.output


def test_verify_without_lemmas_gives_the_same_verdicts(tmp_path: Path) -> None:
    """`--no-lemmas` leaves the stored lemmas out of the bounded check; they hold in every
    reachable state, so the verdicts and depths are the same (baseline findings included)."""
    docs = []
    for extra in ([], ["--no-lemmas"]):
        js = tmp_path / f"r{len(docs)}.json"
        r = runner.invoke(app, ["verify", "-r", "baseline", "-d", "3", "--seed", "migrating",
                                "--seed", "stopping", "--json", str(js),
                                "--trace-dir", str(tmp_path / "t"), *extra])
        assert r.exit_code == 0, r.output
        v = json.loads(js.read_text())["revisions"]["baseline"]["verdicts"]
        docs.append({i: (x["status"], x["depth"]) for i, x in v.items()})
    assert docs[0] == docs[1]
    assert any(s == "finding" for s, _ in docs[0].values())
