"""The explicit-state explorer: pinned state counts, the generation abstraction's soundness,
and its limits (docs/diagrams.md)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from model.actions import model_for
from model.explore import (
    DEFAULT_DEPTH,
    EXPLORER_BOUNDS,
    StateCapReached,
    canonical,
    explore,
    explorer_config,
)
from model.step import ModelBoundExceeded, State, apply

# distinct canonical states and transitions within `depth` steps of the explorer's seeds
PINNED_SMALL = {("baseline", 3): (2300, 5765), ("rfd486", 3): (1921, 4284)}
PINNED_DEFAULT = {"baseline": 21883, "rfd486": 16135}


@pytest.mark.parametrize(("revision", "depth"), sorted(PINNED_SMALL))
def test_state_count_at_small_depth_is_pinned(revision: str, depth: int) -> None:
    ex = explore(explorer_config(revision), depth=depth)
    assert (ex.states, ex.edges) == PINNED_SMALL[(revision, depth)]
    assert ex.out_of_range == 0


@pytest.mark.slow
@pytest.mark.parametrize("revision", sorted(PINNED_DEFAULT))
def test_state_count_at_default_bounds_is_pinned(revision: str) -> None:
    ex = explore(explorer_config(revision))
    assert ex.depth == DEFAULT_DEPTH
    assert ex.states == PINNED_DEFAULT[revision]


def test_explorer_bounds_are_the_documented_ones() -> None:
    cfg = explorer_config("baseline")
    assert {k: getattr(cfg, k) for k in EXPLORER_BOUNDS} == EXPLORER_BOUNDS
    assert cfg.mutants == ()


def test_every_edge_is_a_step_of_the_model() -> None:
    ex = explore(explorer_config("rfd486"), depth=2)
    for u, v, i in ex.graph.edges(data="action"):
        t = apply(ex.model, i, ex.state(u))
        assert t is not None
        assert canonical(ex.model, t) == ex.state(v)


def test_depths_are_breadth_first_distances() -> None:
    ex = explore(explorer_config("baseline"), depth=3)
    seeds = [n for n, d in ex.graph.nodes(data="depth") if d == 0]
    assert 0 < len(seeds) <= len(ex.seeds)  # seeds with equal canonical states merge
    for u, v in ex.graph.edges():
        assert ex.graph.nodes[v]["depth"] <= ex.graph.nodes[u]["depth"] + 1


def test_state_cap_stops_with_a_clear_message() -> None:
    with pytest.raises(StateCapReached, match=r"more than 100 distinct states.*--max-states"):
        explore(explorer_config("baseline"), depth=DEFAULT_DEPTH, max_states=100)


def test_explorer_refuses_mutants() -> None:
    cfg = replace(explorer_config("baseline"), mutants=("no-updater-lock",))
    with pytest.raises(ValueError, match="without mutants"):
        explore(cfg, depth=1)


def _commutes(revision: str, seed: int, steps: int) -> tuple[int, int]:
    """Random walk over raw states; at every state, every action must give the same
    canonical successor from the raw state and from its canonical form."""
    model = model_for(explorer_config(revision))
    rng = random.Random(seed)
    s: State = model.layout.fresh_state()
    history = [s]
    checked = top = 0
    for _ in range(steps):
        c = canonical(model, s)
        nxt = []
        for i, a in enumerate(model.actions):
            try:
                raw = apply(model, i, s)
            except ModelBoundExceeded:
                continue
            abs_ = apply(model, i, c)
            assert (raw is None) == (abs_ is None), (a.label, s)
            if raw is None or abs_ is None:
                continue
            assert canonical(model, raw) == canonical(model, abs_), (a.label, s)
            checked += 1
            if "delete" not in a.name and "CREATE_INSTANCE_RECORD" not in a.name:
                nxt.append(raw)
        s = rng.choice(nxt) if nxt else rng.choice(history)
        history.append(s)
        top = max(top, max(int(v) for k, v in s.items() if model.layout.kind(k) == "gen"))
    return checked, top


@pytest.mark.parametrize("revision", ["baseline", "rfd486"])
def test_generation_abstraction_commutes_with_the_step_function(revision: str) -> None:
    checked, top = _commutes(revision, seed=7, steps=600)
    assert checked > 1000
    assert top > 4  # the walk reached generations the abstraction rewrites


def test_canonical_forgets_stale_lock_tokens_and_renumbers_ids() -> None:
    model = model_for(explorer_config("baseline"))
    s = model.layout.fresh_state()
    s.update({"i_updater": 9, "i_ugen": 12, "up_lid.0": 9, "up_lgen.0": 12,
              "uc_plid.0": 5, "uc_plgen.0": 7, "next_uuid": 13})
    t = dict(s, **{"uc_plgen.0": 4})  # another stale token: indistinguishable
    cs, ct = canonical(model, s), canonical(model, t)
    assert cs == ct
    assert cs["i_updater"] == cs["up_lid.0"] == 1 and cs["uc_plid.0"] == 2
    assert cs["next_uuid"] == 3
    assert cs["up_lgen.0"] == cs["i_ugen"] and cs["uc_plgen.0"] < cs["i_ugen"]
