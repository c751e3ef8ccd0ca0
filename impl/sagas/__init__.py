"""The lifecycle sagas, node by node as in SPEC §4 (both revisions)."""

from __future__ import annotations

from impl.executor.saga_executor import DagBuilder


def registry() -> dict[str, DagBuilder]:
    """Saga name -> DAG builder (a pure function of the saga parameters)."""
    from impl.sagas import (
        instance_create,
        instance_delete,
        instance_migrate,
        instance_start,
        instance_update,
        start_instance_update,
    )

    return {
        instance_create.NAME: instance_create.build,
        instance_start.NAME: instance_start.build,
        instance_migrate.NAME: instance_migrate.build,
        instance_delete.NAME: instance_delete.build,
        start_instance_update.NAME: start_instance_update.build,
        instance_update.NAME: instance_update.build,
    }
