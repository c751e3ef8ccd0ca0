"""The instance's externally visible state (SPEC §3, `determine_effective_state`).

The rules are evaluated top to bottom; the first match wins. The active VMM counts only if
its row is not soft-deleted. The function is part of the model: invariants
`saga_unwound_never_visible` and `stopped_means_startable` are stated over it, and the
diagrams project reachable states onto it.
"""

from __future__ import annotations

from .expr import Ctx, Val
from .state import NONE, Config
from .vocab import ExternalState as X
from .vocab import InstanceState as I
from .vocab import VmmState as V

# rule 5: a VMM state shown as it is. SagaUnwound has no external name: if rule 3 ever failed
# to catch it, the result would be LEAKED_SAGA_UNWOUND, which the invariant forbids.
VMM_TO_EXTERNAL_BASELINE = {
    V.STARTING: X.STARTING, V.RUNNING: X.RUNNING, V.STOPPING: X.STOPPING,
    V.STOPPED: X.STOPPED, V.REBOOTING: X.REBOOTING, V.MIGRATING: X.MIGRATING,
    V.FAILED: X.FAILED, V.DESTROYED: X.DESTROYED, V.SAGA_UNWOUND: X.LEAKED_SAGA_UNWOUND,
    V.CREATING: X.LEAKED_SAGA_UNWOUND,  # not a baseline state at all
}
INSTANCE_TO_EXTERNAL = {
    I.CREATING: X.CREATING, I.NO_VMM: X.STOPPED, I.VMM: X.RUNNING, I.FAILED: X.FAILED,
    I.DESTROYED: X.DESTROYED,
}


def active_vmm_present(ctx: Ctx) -> Val:
    """The join `vmm.id = active_propolis_id AND vmm.time_deleted IS NULL` found a row."""
    a = ctx["i_active"]
    return ctx.ops.And(a != NONE, ctx.at("v_state", a) != V.ABSENT,
                       ctx.ops.Not(ctx.at("v_del", a, True)))


def table_lookup(ctx: Ctx, key: Val, table: dict, default: Val) -> Val:
    out = default
    for k, v in table.items():
        out = ctx.ops.If(key == k, int(v), out)
    return out


def effective_state(ctx: Ctx, cfg: Config) -> Val:
    ops = ctx.ops
    i = ctx["i_state"]
    has_vmm = active_vmm_present(ctx)
    v = ctx.at("v_state", ctx["i_active"])
    vmm_map = dict(VMM_TO_EXTERNAL_BASELINE)
    if cfg.rfd486:
        vmm_map[V.CREATING] = X.STARTING
    rule5 = table_lookup(ctx, v, vmm_map, int(X.LEAKED_SAGA_UNWOUND))
    rule6 = table_lookup(ctx, i, INSTANCE_TO_EXTERNAL, int(X.RUNNING))
    saga_unwound = int(X.FAILED) if cfg.rfd486 else int(X.STOPPED)
    out = ops.If(has_vmm, rule5, rule6)
    if cfg.rfd486:
        out = ops.If(ops.And(i == I.VMM, has_vmm, v == V.FAILED), int(X.STOPPING), out)
    out = ops.If(i == I.NO_VMM, int(X.STOPPED), out)
    out = ops.If(ops.And(i == I.VMM, has_vmm, v == V.SAGA_UNWOUND), saga_unwound, out)
    out = ops.If(ops.And(i == I.VMM, has_vmm, ops.In(v, (V.STOPPED, V.DESTROYED))),
                 int(X.STOPPING), out)
    out = ops.If(ops.And(i == I.VMM, has_vmm, ctx["i_mig"] != NONE), int(X.MIGRATING), out)
    return out
