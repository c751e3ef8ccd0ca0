"""Known differences between the model and the implementation, each judged against the SPEC.

A divergence names a (state, action) situation in which the model and the implementation
legitimately or knowingly differ. Trace generation avoids these steps, so the suite replays
cleanly; replay tags a mismatch at such a step with the divergence's name. Each entry says
which side the SPEC backs. docs/conformance.md lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from model.saga import Action
from model.state import IDLE, NONE
from model.step import State


@dataclass(frozen=True)
class Divergence:
    name: str
    summary: str
    spec_backs: str  # "impl", "model" or "neither"
    applies: Callable[[Action, State], bool]


def _delete_with_active_vmm(a: Action, s: State) -> bool:
    return a.name == "user.instance_delete" and s["i_active"] != NONE


def _pool_full(s: State, prefix: str) -> bool:
    return all(int(v) != IDLE for k, v in s.items() if k.startswith(f"{prefix}_mode."))


def _saga_pool_exhausted(a: Action, s: State) -> bool:
    if a.arg("outcome") == "fail":
        return False
    if a.name == "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA":
        return _pool_full(s, "uc")
    if a.name == "instance-update.COMMIT_INSTANCE_UPDATES":
        return _pool_full(s, "up")
    return False


REPORTING = ("sled-agent.deliver_report", "instance-watcher.poll", "user.instance_stop",
             "user.instance_reboot")


DIVERGENCES: tuple[Divergence, ...] = (
    Divergence(
        "delete-api-precheck",
        "the implementation's delete API refuses (400) an instance that still has an active "
        "VMM (docs/decisions-impl.md); the model starts the saga, whose "
        "INSTANCE_DELETE_NAT runs before INSTANCE_DELETE_RECORD fails. SPEC §4.5 does not "
        "say whether the API checks first",
        "neither",
        _delete_with_active_vmm,
    ),
    Divergence(
        "saga-pool-exhausted",
        "a bound of the model: with every instance-update (start-instance-update) slot taken, "
        "FETCH_STATE_AND_START_REAL_SAGA fails (the chaining commit starts nothing); the "
        "implementation has no such bound and starts the saga",
        "neither",
        _saga_pool_exhausted,
    ),
)


def divergence_at(a: Action, s: State) -> Divergence | None:
    """The known divergence that taking `a` in state `s` runs into, if any."""
    return next((d for d in DIVERGENCES if d.applies(a, s)), None)
