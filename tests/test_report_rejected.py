"""SPEC §4.1 step 1: a report whose migration side names a soft-deleted migration row fails
as a whole (Gone). The model writes nothing for it; the implementation answers the push with
an error; replay holds the two together (lifecycle-model/4 and later)."""

from __future__ import annotations

from pathlib import Path

from conformance.replay import replay_trace
from model.actions import model_for
from model.expr import CONCRETE, Ctx
from model.notify_instance_updated import report_rejected
from model.trace import load_itf

TRACE = Path(__file__).parent / "traces" / "report-names-deleted-migration.itf.json"
STEP = 48  # sled-agent.deliver_report(vmm=0, ...): VMM 0's report names migration 1


def test_the_model_writes_nothing_for_a_report_naming_a_deleted_migration() -> None:
    t = load_itf(TRACE)
    model = model_for(t.cfg)
    pre, post = t.states[STEP - 1], t.states[STEP]
    assert t.labels[STEP - 1].startswith("sled-agent.deliver_report(vmm=0,")
    m = int(pre["sa_mout.0"])
    assert pre[f"m_del.{m}"] and int(pre[f"m_src.{m}"]) == 0  # VMM 0 is its deleted source
    assert report_rejected(Ctx(CONCRETE, pre, model.layout.sizes), t.cfg, 0)
    changed = {k for k in pre if pre[k] != post[k]}
    assert changed == {"rb_state.0", "rb_gen.0"}  # the report left the sled, nothing landed
    # the other reports of the trace are not refused
    rejected = [i for i, lab in enumerate(t.labels, start=1)
                if lab.startswith("sled-agent.deliver_report")
                and report_rejected(Ctx(CONCRETE, t.states[i - 1], model.layout.sizes), t.cfg,
                                    int(lab.split("vmm=")[1].split(",")[0]))]
    assert rejected == [STEP]


def test_the_implementation_refuses_it_too() -> None:
    res = replay_trace(load_itf(TRACE), str(TRACE))
    assert res.ok, res.mismatch and res.mismatch.render()
    assert res.calls["report rejected (NotFound)"] == 1


def test_a_refused_report_does_not_apply_its_newer_vmm_state_either() -> None:
    """The whole transaction fails: with the VMM row older than the report, the VMM part would
    apply on its own, and must not."""
    from model.step import apply

    t = load_itf(TRACE)
    model = model_for(t.cfg)
    pre = dict(t.states[STEP - 1])
    pre["v_gen.0"] = int(pre["rb_gen.0"]) - 1
    i = model.action_index(t.labels[STEP - 1])
    post = apply(model, i, pre)
    assert post is not None
    assert {k for k in pre if pre[k] != post[k]} == {"rb_state.0", "rb_gen.0"}
    # the same report naming a live row applies the VMM state
    live = dict(pre)
    live[f"m_del.{int(pre['sa_mout.0'])}"] = False
    after = apply(model, i, live)
    assert after is not None and after["v_gen.0"] == pre["rb_gen.0"]
