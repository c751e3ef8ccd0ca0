"""Saga `instance-delete` (SPEC §4.5): four nodes, none with an undo."""

from __future__ import annotations

from typing import Any

from impl.errors import NotFound
from impl.executor.context import SagaContext
from impl.executor.dag import Node

NAME = "instance-delete"


def _iid(ctx: SagaContext) -> str:
    return str(ctx.params["instance_id"])


def delete_nat(ctx: SagaContext) -> None:
    ctx.nexus.fleet.switch.delete(_iid(ctx))


def delete_record(ctx: SagaContext) -> bool:
    """`project_delete_instance`; ObjectNotFound counts as success (a replay)."""
    try:
        ctx.datastore.project_delete_instance(_iid(ctx))
    except NotFound:
        return False
    return True


def delete_network_interfaces(ctx: SagaContext) -> None:
    ctx.nexus.activate("v2p_manager")


def deallocate_external_ip(ctx: SagaContext) -> None:
    return None


def build(params: dict[str, Any]) -> list[Node]:
    return [
        Node("instance_delete_nat", delete_nat),
        Node("instance_delete_record", delete_record),
        Node("delete_network_interfaces", delete_network_interfaces),
        Node("deallocate_external_ip", deallocate_external_ip),
    ]
