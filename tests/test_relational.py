"""Relational observables and the candidates mined over them (conformance/relational.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import z3
from typer.testing import CliRunner

from conformance import relational
from conformance.goals import Lemma, _holds, _read, _term
from lifecycle.cli import app
from model.actions import model_for
from model.expr import CONCRETE, WIDTH, Z3, Ctx, lift
from model.state import NONE, Config
from model.step import State

runner = CliRunner()


def _z3_value(model_state: State, name: str, cfg: Config) -> int | bool:
    """The observable read through the symbolic semantics, on constants."""
    sizes = model_for(cfg).layout.sizes
    consts = {n: z3.BoolVal(v) if isinstance(v, bool) else z3.BitVecVal(v, WIDTH)
              for n, v in model_state.items()}
    term = z3.simplify(lift(_read(Ctx(Z3, consts, sizes), name, cfg)))
    return z3.is_true(term) if z3.is_bool(term) else term.as_long()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def sample() -> list[State]:
    return relational.walk_sample(model_for(Config(revision="rfd486")), 300, seed=0)


def test_walks_start_along_the_seeds_paths() -> None:
    """The walks start from every state on the seeds' paths (opt-in seeds too): the seed
    states themselves and the states in between, where sagas are mid-run."""
    from model.seeds import ALL_SEEDS, seed_states
    model = model_for(Config(revision="rfd486"))
    starts = relational.path_states(model)
    keys = {tuple(s.values()) for s in starts}
    assert len(keys) == len(starts) == 70
    assert all(tuple(sd.state.values()) in keys
               for sd in seed_states(model, list(ALL_SEEDS)))
    assert tuple(model.layout.fresh_state().values()) in keys
    # a migrate saga in the middle of its run, forward and unwinding
    assert {s["mg_pc.0"] for s in starts if s["mg_mode.0"] == 1} >= {1, 2, 3, 4}
    assert any(s["mg_mode.0"] == 2 for s in starts)


def test_observables_read_the_row_a_reference_names(sample: list[State]) -> None:
    cfg = Config(revision="rfd486")
    model = model_for(cfg)
    named = 0
    for s in sample:
        ctx = Ctx(CONCRETE, s, model.layout.sizes)
        a = s["i_active"]
        want = s[f"v_state.{a}"] if a != NONE else relational.VMM_FIELDS["v_state"]
        named += a != NONE
        assert _read(ctx, "@v_state[i_active]", cfg) == want
        assert _read(ctx, "@same(i_active,st_vmm.0)", cfg) == (a != NONE
                                                              and a == s["st_vmm.0"])
        d = s["i_gen"] - s["uc_ngen.0"]
        assert _read(ctx, "@gd(i_gen,uc_ngen.0)", cfg) == {0: 0, 1: 1, -1: 2}.get(
            d, 3 if d > 1 else 4)
    assert named > 0  # the sample does name active VMMs


def test_concrete_and_symbolic_observables_agree(sample: list[State]) -> None:
    cfg = Config(revision="rfd486")
    names = relational.names(cfg)
    assert len(names) == 413
    model = model_for(cfg)
    for s in sample[::30]:
        ctx = Ctx(CONCRETE, s, model.layout.sizes)
        for n in names[::7]:
            assert _z3_value(s, n, cfg) == _read(ctx, n, cfg), n


def test_unknown_relational_names_are_refused() -> None:
    for bad in ("@nosuch[i_active]", "@gd(i_gen)", "@same(i_active)", "@v_state"):
        assert relational.observable(bad) is None
    with pytest.raises(KeyError):
        _read(Ctx(CONCRETE, {}, {}), "@nosuch[i_active]", Config())


def test_mined_candidates_hold_on_their_sample(sample: list[State]) -> None:
    model = model_for(Config(revision="rfd486"))
    specs = relational.mine(model, relational.table(model, sample))
    assert any(sp[0] == "implies" and str(sp[3]).startswith("@") for sp in specs)
    for spec in specs[::50]:
        lem = Lemma(spec)
        assert all(_holds(model, lem, s) for s in sample), lem.name


def test_relational_lemmas_need_known_goals() -> None:
    res = runner.invoke(app, ["traces", "lemmas", "-r", "rfd486", "--relational"])
    assert res.exit_code == 2 and "needs goals" in res.output
    res = runner.invoke(app, ["traces", "lemmas", "-r", "rfd486", "--relational",
                              "--goal", "pair:NOPE/none"])
    assert res.exit_code == 2 and "pair:NOPE/none" in res.output
    res = runner.invoke(app, ["traces", "lemmas", "-r", "rfd486", "--goal", "pair:RUNNING/none"])
    assert res.exit_code == 2 and "--relational" in res.output


def test_two_condition_candidates_hold_and_say_more(sample: list[State]) -> None:
    """Every two-condition candidate holds on its sample, in the concrete and the Z3
    semantics alike, and is stronger than its two one-condition facts together."""
    model = model_for(Config(revision="rfd486"))
    specs = relational.mine_pairs(model, relational.table(model, sample))
    assert specs and all(sp[0] == "implies2" for sp in specs)
    assert any(str(sp[1]).startswith("uc_pc.") and str(sp[3]).startswith("@")
               for sp in specs)
    for spec in specs[::40]:
        lem = Lemma(spec)
        assert all(_holds(model, lem, s) for s in sample), lem.name
        for s in sample[::25]:
            consts = {n: z3.BoolVal(v) if isinstance(v, bool) else z3.BitVecVal(v, WIDTH)
                      for n, v in s.items()}
            assert z3.is_true(z3.simplify(_term(model, lem, consts))), lem.name
        _, x1, c1, x2, c2, y, vals = spec
        ctx_of = [Ctx(CONCRETE, s, model.layout.sizes) for s in sample]
        both = {_read(c, str(y), model.cfg) for c in ctx_of
                if _read(c, str(x1), model.cfg) == c1 and _read(c, str(x2), model.cfg) == c2}
        one = ({_read(c, str(y), model.cfg) for c in ctx_of if _read(c, str(x1), model.cfg) == c1}
               & {_read(c, str(y), model.cfg) for c in ctx_of
                  if _read(c, str(x2), model.cfg) == c2})
        assert both == set(vals) and both < one, lem.name
    # a false instance is told apart: the negated value set fails somewhere
    spec = specs[0]
    wrong = Lemma((*spec[:6], tuple(v for v in range(64) if v not in spec[6])
                   if not isinstance(spec[6][0], bool) else (not spec[6][0],)))
    assert not all(_holds(model, wrong, s) for s in sample)


def test_fallbacks_restate_unconditional_facts_per_control_state(sample: list[State]) -> None:
    """Every fallback holds on its sample, is one `mine` left out, and restates a range `mine`
    proposes unconditionally, under one control state of the same saga slot."""
    model = model_for(Config(revision="rfd486"))
    tab = relational.table(model, sample)
    mined = relational.mine(model, tab)
    ranges = {(sp[1], sp[2]) for sp in mined if sp[0] == "in"}
    specs = relational.mine_fallbacks(model, tab)
    assert specs and not set(specs) & set(mined)
    for _, x, _c, y, vals in specs:
        base, slot = str(x).split(".")
        assert base in relational.SAGA_CONTROL
        assert (base.split("_")[0], slot) in relational._SLOT.findall(str(y))  # the same slot
        assert (y, vals) in ranges
    for spec in specs[::20]:
        assert all(_holds(model, Lemma(spec), s) for s in sample), Lemma(spec).name
    # complete: under every start-saga mode the sample shows, each range about start saga 0's
    # rows is restated, by a fallback or by a stronger implication `mine` proposes
    modes = {s["st_mode.0"] for s in sample}
    assert len(modes) >= 2
    conditional = {(sp[1], sp[2], sp[3]) for sp in [*specs, *mined] if sp[0] == "implies"}
    about = {y for y, _ in ranges
             if ("st", "0") in relational._SLOT.findall(str(y)) and y != "st_mode.0"}
    assert len(about) >= 10
    for y in about:
        for c in modes:
            assert ("st_mode.0", c, y) in conditional, (c, y)


def test_sled_ranges_bound_every_variable_of_the_sleds_view(sample: list[State]) -> None:
    """The sled-agents' view gets ranges (and only ranges): one per variable, true on the
    sample, and false for the out-of-range migration state of the fourth attempt's witness."""
    model = model_for(Config(revision="rfd486"))
    specs = relational.sled_ranges(model, sample)
    view = [n for n in model.layout.names if n.split(".")[0] in relational.SLED_VIEW]
    assert sorted(sp[1] for sp in specs) == sorted(view) and len(view) == 16
    assert all(sp[0] == "in" for sp in specs)
    for spec in specs:
        assert all(_holds(model, Lemma(spec), s) for s in sample), Lemma(spec).name
    src = next(sp for sp in specs if sp[1] == "sa_msrc_st.0")
    assert not _holds(model, Lemma(src), {**sample[0], "sa_msrc_st.0": 44})
    assert next(sp for sp in specs if sp[1] == "sa_min.0")[2] == (0, 1, NONE)


def test_targeted_houdini_reports_what_it_drops() -> None:
    """A candidate that holds in the fresh state but not after a step is dropped by a
    counterexample to induction, and `on_drop` names it with its round; the stored lemmas
    still refute the goal on their own."""
    from conformance.goals import stored_proof, targeted_houdini
    from model.bmc import encoding_for

    cfg = Config(revision="rfd486")
    model, enc = model_for(cfg), encoding_for(cfg)
    stored = stored_proof(model, enc).lemmas
    bogus = Lemma(("in", "i_gen", (1,)))
    drops: list[tuple[int, list[str], str]] = []
    proof = targeted_houdini(model, enc, [bogus, *stored], ["pair:STOPPED/RUNNING"],
                             minimize_cores=True, on_drop=lambda r, n, a: drops.append((r, n, a)))
    assert drops and drops[0][1] == [bogus.name] and drops[0][0] >= 1
    # the step of the counterexample is named: one of the model's actions
    assert drops[0][2] in {a.label for a in model.actions}
    assert proof.lemmas and bogus not in proof.lemmas
    assert all(lem in stored for lem in proof.lemmas)


def test_drop_log_needs_relational(tmp_path: Path) -> None:
    res = runner.invoke(app, ["traces", "lemmas", "-r", "rfd486", "--drop-log",
                              str(tmp_path / "d.tsv")])
    assert res.exit_code == 2 and "--relational" in res.output
    assert not (tmp_path / "d.tsv").exists()
