"""Readable names for state values, for tables, traces and diagrams."""

from __future__ import annotations

from typing import Any

from .actions import Model
from .state import NET_DELETE, NET_UPDATE, NONE
from .vocab import InstanceState, MigrationState, VmmState

MODES = {0: "idle", 1: "forward", 2: "unwinding", 3: "stuck"}
SAGA_OF_PREFIX = {"cr": "instance-create", "st": "instance-start", "mg": "instance-migrate",
                  "dl": "instance-delete", "up": "start-instance-update",
                  "uc": "instance-update"}


def _base(name: str) -> str:
    return name.split(".")[0]


def decode(model: Model, name: str, value: Any) -> str:
    base = _base(name)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if base == "i_state" or base == "uc_nstate":
        return InstanceState(value).name
    if base in ("v_state", "sa_state", "rb_state"):
        return VmmState(value).name
    if base.endswith("_st"):
        return MigrationState(value).name
    if base.endswith("_mode"):
        return MODES.get(value, str(value))
    if base.endswith("_pc"):
        saga = SAGA_OF_PREFIX[base.split("_")[0]]
        sd = next(s for s in model.sagas if s.kind == saga)
        return sd.nodes[value].name if value < len(sd.nodes) else str(value)
    if base == "uc_netop":
        return {0: "none", NET_DELETE: "delete", NET_UPDATE: "update"}.get(value, str(value))
    if model.layout.kind(name) == "ref":
        if value == NONE:
            return "—"
        if base in ("i_mig", "mg_mig", "sa_min", "sa_mout", "uc_nmig"):
            return f"mig{value}"
        if base == "up_child":
            return f"child#{value}"
        if base == "uc_parent":
            return f"parent#{value}"
        return f"vmm{value}"
    if base in ("i_updater", "up_lid", "uc_lid", "uc_plid", "st_lid"):
        return "NULL" if value == 0 else f"L{value}"
    return str(value)
