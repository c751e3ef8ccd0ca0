"""Virtual provisioning: the charge and its release (SPEC §1.4, `VPC-query`).

Both are single CTE statements keyed by the instance id. The resource row makes them
idempotent: a charge counts only when it inserted the row, a release only when it deleted it.
"""

from __future__ import annotations

from .expr import Ctx
from .state import Config


def virtual_provisioning_insert_instance(ctx: Ctx) -> None:
    """Charge the instance's CPUs and RAM (ADD_VIRTUAL_RESOURCES). Quotas always pass here."""
    with ctx.when(ctx.ops.Not(ctx["prov_row"])):
        ctx.set("prov_row", True)
        ctx.set("prov_cnt", ctx["prov_cnt"] + 1)


def virtual_provisioning_delete_instance(ctx: Ctx, cfg: Config) -> None:
    """Release the charge. The instance row always exists (soft delete keeps it), so the
    release happens iff the resource row exists; a second release does nothing."""
    if cfg.has("release-not-idempotent"):
        ctx.set("prov_row", False)
        ctx.set("prov_cnt", ctx["prov_cnt"] - 1)
        return
    with ctx.when(ctx["prov_row"]):
        ctx.set("prov_row", False)
        ctx.set("prov_cnt", ctx["prov_cnt"] - 1)
