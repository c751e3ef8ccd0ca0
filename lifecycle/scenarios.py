"""Hand-written scenarios written as trace files, for `lifecycle explain`.

The bounded checker reports the shortest counterexample, and with `no-updater-lock` that is a
release of provisioning by an unlocked update saga a few steps after a seed. The race the
lock exists for (SPEC §7 R1: two update sagas act on one snapshot, the second release wipes a
restarted instance's new charge) is longer than the checker's default depth, so it is spelled
out here step by step. Every step is replayed through the model's step function, so the file
is a genuine run of the model with the defect switched on.
"""

from __future__ import annotations

from pathlib import Path

from model.actions import model_for
from model.seeds import seed_states
from model.state import Config
from model.step import State, apply
from model.trace import write_itf

START = ["user.instance_start(saga=0, vmm=1)"] + [
    f"instance-start.{n}(saga=0, outcome=ok)"
    for n in ("ALLOC_SERVER", "CREATE_VMM_RECORD", "MARK_AS_STARTING", "DPD_ENSURE",
              "ENSURE_REGISTERED", "ADD_VIRTUAL_RESOURCES")]

R1_STEPS = [
    # a second update saga is started for the same destroyed VMM (the sweep sees no lock)
    "instance-updater.activate",
    # both read the same snapshot: active VMM 0 Destroyed, so both plan to deprovision
    "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA(saga=0, outcome=ok)",
    "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA(saga=1, outcome=ok)",
    # the first releases the charge and commits NoVmm
    "instance-update.RECONCILE_RESOURCES(saga=0, outcome=ok)",
    "instance-update.COMMIT_INSTANCE_UPDATES(saga=0, outcome=ok)",
    # the user starts the instance again; the start saga charges it
    *START,
    # the second saga releases "again": the new charge is gone while VMM 1 starts
    "instance-update.RECONCILE_RESOURCES(saga=1, outcome=ok)",
]


def r1_double_release(path: Path, revision: str = "baseline") -> Path:
    """Write the R1 scenario under `no-updater-lock` as an ITF trace file."""
    cfg = Config(revision=revision, mutants=("no-updater-lock",))
    model = model_for(cfg)
    seed = next(sd for sd in seed_states(model, ["stopping"]))
    states: list[State] = [model.layout.fresh_state()]
    labels: list[str] = []
    for lab in seed.prefix + R1_STEPS:
        t = apply(model, model.action_index(lab), states[-1])
        if t is None:
            raise RuntimeError(f"R1 scenario: {lab} is not enabled ({cfg.describe()})")
        states.append(t)
        labels.append(lab)
    write_itf(path, cfg, model, labels, states, seed="stopping", seed_len=len(seed.prefix),
              invariant="active_vms_have_resources", depth=len(R1_STEPS),
              command=f"lifecycle replay {path}")
    return path
