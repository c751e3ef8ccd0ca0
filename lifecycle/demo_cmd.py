"""`lifecycle demo`: a scripted lifecycle (create, start, migrate, stop, delete).

Runs one Nexus replica over the given database (embedded in-memory SQLite by default) with
simulated sled-agents, drives every saga, report and background task to completion after each
operation, and prints the external state (SPEC §3) with the records behind it.
"""

from __future__ import annotations

import uuid

from rich.console import Console
from rich.table import Table

from impl.controller import Controller


def _show(console: Console, c: Controller, step: str, instance_id: str) -> None:
    snap = c.snapshot(instance_id)
    assert snap is not None
    inst = snap.instance
    ext = c.external_state(instance_id)
    table = Table(title=f"{step}: external state [bold]{ext.name.lower()}[/bold]", title_justify="left")
    table.add_column("record")
    table.add_column("fields")
    table.add_row(
        "instance",
        f"state={inst.state.name.lower()} gen={inst.state_generation} "
        f"active={_short(inst.active_propolis_id)} target={_short(inst.target_propolis_id)} "
        f"migration={_short(inst.migration_id)} updater={_short(inst.updater_id)}/{inst.updater_gen}"
        + (" deleted" if inst.time_deleted else ""),
    )
    for v in c.datastore.vmm_list(include_deleted=True):
        if v.instance_id == instance_id:
            table.add_row(
                "vmm",
                f"{_short(v.id)} on {v.sled_id} state={v.state.name.lower()} gen={v.state_generation}"
                + (" deleted" if v.time_deleted else ""),
            )
    if snap.migration is not None:
        m = snap.migration
        table.add_row(
            "migration",
            f"{_short(m.id)} source={m.source_state.name.lower()}/{m.source_gen} "
            f"target={m.target_state.name.lower()}/{m.target_gen}",
        )
    counters = c.datastore.provisioning_counters()["project"]
    table.add_row("provisioning", f"project cpus={counters[0]} ram={counters[1]}")
    table.add_row("sled reservations", ", ".join(sorted(c.datastore.sled_reservations().values())) or "-")
    console.print(table)


def _short(x: str | None) -> str:
    return "-" if x is None else x[:8]


def run_demo(db_url: str = "sqlite://") -> int:
    """Run the scripted lifecycle on `db_url`; returns 0 on success (a process exit code)."""
    console = Console()
    schema = f"lifecycle_demo_{uuid.uuid4().hex[:8]}" if db_url.startswith("postgresql") else None
    c = Controller(db_url=db_url, revision="baseline", nexus_ids=("nexus-0",), pg_schema=schema)
    try:
        console.print(f"[bold]lifecycle demo[/bold] on {c.datastore.dialect} ({db_url})")
        iid, saga = c.create_instance("demo-instance", ncpus=2, memory=2048)
        c.run_saga(saga)
        _show(console, c, "create", iid)

        c.start_instance(iid)
        c.run_sagas()
        _show(console, c, "start (saga done, VMM not yet running)", iid)
        c.settle()
        _show(console, c, "start (sled-agent reported Running)", iid)

        src = c.snapshot(iid)
        assert src is not None and src.active_vmm is not None
        dst = next(s for s in c.fleet.sleds if s != src.active_vmm.sled_id)
        c.migrate_instance(iid, dst)
        c.run_sagas()
        _show(console, c, f"migrate to {dst} (saga done)", iid)
        c.settle()
        _show(console, c, "migrate (both sides reported, update saga ran)", iid)

        c.stop_instance(iid)
        for vid in c.advanceable_vmms():
            c.vmm_advance(vid)  # Propolis: Running -> Stopping
        c.deliver_all_reports()
        _show(console, c, "stop (sled-agent reported Stopping)", iid)
        c.settle()
        _show(console, c, "stop (VMM destroyed, update saga ran)", iid)

        c.run_saga(c.delete_instance(iid))
        c.settle()
        _show(console, c, "delete", iid)
        bad = c.quiescent_violations()
        if bad:
            console.print("[red]invariant violations:[/red]", *bad)
            return 1
        console.print(f"[green]ok[/green]: {c.datastore.statements} SQL statements")
        return 0
    finally:
        c.close(drop_schema=schema is not None)
