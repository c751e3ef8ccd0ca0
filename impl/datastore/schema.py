"""Table definitions (SPEC §1), written once in SQLAlchemy Core for SQLite and PostgreSQL.

Provisioning counters are maintained by triggers on `virtual_provisioning_resource`, so that
charging (an `INSERT ... ON CONFLICT DO NOTHING`) and releasing (a conditional `DELETE`) are each
one statement that updates the collections only when the resource row really changed — the
effect of omicron's single-CTE `VPC-query` (SPEC §1.4). The trigger text is the only
dialect-specific DDL.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.engine import Connection

metadata = MetaData()

UUID = String(36)

instance = Table(
    "instance",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("name", String(63), nullable=False),
    Column("project_id", UUID, nullable=False),
    Column("ncpus", Integer, nullable=False),
    Column("memory", Integer, nullable=False),
    Column("boot_on_fault", Boolean, nullable=False, default=False),
    Column("time_created", DateTime(timezone=True), nullable=False),
    Column("time_deleted", DateTime(timezone=True), nullable=True),
    Column("state", String(16), nullable=False),
    Column("state_generation", Integer, nullable=False),
    Column("time_state_updated", DateTime(timezone=True), nullable=False),
    Column("active_propolis_id", UUID, nullable=True),
    Column("target_propolis_id", UUID, nullable=True),
    Column("migration_id", UUID, nullable=True),
    Column("updater_id", UUID, nullable=True),
    Column("updater_gen", Integer, nullable=False, server_default=text("0")),
    CheckConstraint(
        "(state = 'vmm' AND active_propolis_id IS NOT NULL) OR "
        "(state <> 'vmm' AND active_propolis_id IS NULL)",
        name="vmm_iff_active_propolis",
    ),
)

vmm = Table(
    "vmm",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("time_created", DateTime(timezone=True), nullable=False),
    Column("time_deleted", DateTime(timezone=True), nullable=True),
    Column("instance_id", UUID, nullable=False, index=True),
    Column("sled_id", UUID, nullable=False),
    Column("propolis_ip", String(64), nullable=False),
    Column("propolis_port", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("state_generation", Integer, nullable=False),
    Column("time_state_updated", DateTime(timezone=True), nullable=False),
)

migration = Table(
    "migration",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("instance_id", UUID, nullable=False, index=True),
    Column("time_created", DateTime(timezone=True), nullable=False),
    Column("time_deleted", DateTime(timezone=True), nullable=True),
    Column("source_state", String(16), nullable=False),
    Column("source_propolis_id", UUID, nullable=False),
    Column("source_gen", Integer, nullable=False, server_default=text("1")),
    Column("time_source_updated", DateTime(timezone=True), nullable=True),
    Column("target_state", String(16), nullable=False),
    Column("target_propolis_id", UUID, nullable=False),
    Column("target_gen", Integer, nullable=False, server_default=text("1")),
    Column("time_target_updated", DateTime(timezone=True), nullable=True),
)

sled = Table(
    "sled",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("ip", String(64), nullable=False),
    Column("usable_hardware_threads", Integer, nullable=False),
)

sled_resource = Table(
    "sled_resource",
    metadata,
    Column("id", UUID, primary_key=True),  # the VMM (propolis) id, SPEC §1.4
    Column("sled_id", UUID, nullable=False),
    Column("hardware_threads", Integer, nullable=False),
    Column("rss_ram", Integer, nullable=False),
    Column("reservoir_ram", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
)

virtual_provisioning_resource = Table(
    "virtual_provisioning_resource",
    metadata,
    Column("id", UUID, primary_key=True),  # the instance id, SPEC §1.4
    Column("cpus_provisioned", Integer, nullable=False),
    Column("ram_provisioned", Integer, nullable=False),
    Column("resource_type", String(16), nullable=False),
)

virtual_provisioning_collection = Table(
    "virtual_provisioning_collection",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("collection_type", String(16), nullable=False),
    Column("cpus_provisioned", Integer, nullable=False),
    Column("ram_provisioned", Integer, nullable=False),
)

saga = Table(
    "saga",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("params", Text, nullable=False),
    Column("owner", String(64), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("time_created", DateTime(timezone=True), nullable=False),
)

saga_node_event = Table(
    "saga_node_event",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("saga_id", UUID, nullable=False, index=True),
    Column("node_index", Integer, nullable=False),
    Column("node_name", String(128), nullable=False),
    Column("event_type", String(16), nullable=False),
    Column("data", Text, nullable=True),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("creator", String(64), nullable=False),
)

_SQLITE_TRIGGERS = [
    """CREATE TRIGGER IF NOT EXISTS vpr_charge AFTER INSERT ON virtual_provisioning_resource
    BEGIN
      UPDATE virtual_provisioning_collection
         SET cpus_provisioned = cpus_provisioned + NEW.cpus_provisioned,
             ram_provisioned = ram_provisioned + NEW.ram_provisioned;
    END""",
    """CREATE TRIGGER IF NOT EXISTS vpr_release AFTER DELETE ON virtual_provisioning_resource
    BEGIN
      UPDATE virtual_provisioning_collection
         SET cpus_provisioned = cpus_provisioned - OLD.cpus_provisioned,
             ram_provisioned = ram_provisioned - OLD.ram_provisioned;
    END""",
]

_PG_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION vpr_adjust() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        UPDATE virtual_provisioning_collection
           SET cpus_provisioned = cpus_provisioned + NEW.cpus_provisioned,
               ram_provisioned = ram_provisioned + NEW.ram_provisioned;
        RETURN NEW;
      ELSE
        UPDATE virtual_provisioning_collection
           SET cpus_provisioned = cpus_provisioned - OLD.cpus_provisioned,
               ram_provisioned = ram_provisioned - OLD.ram_provisioned;
        RETURN OLD;
      END IF;
    END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS vpr_charge ON virtual_provisioning_resource",
    """CREATE TRIGGER vpr_charge AFTER INSERT OR DELETE ON virtual_provisioning_resource
       FOR EACH ROW EXECUTE FUNCTION vpr_adjust()""",
]


def create_all(conn: Connection) -> None:
    """Create tables, the provisioning triggers and the single project/silo/fleet rows."""
    metadata.create_all(conn)
    ddl = _PG_TRIGGERS if conn.dialect.name == "postgresql" else _SQLITE_TRIGGERS
    for stmt in ddl:
        conn.exec_driver_sql(stmt)
    have = conn.execute(virtual_provisioning_collection.select()).first()
    if have is None:
        _insert_collections(conn)


def clear_all(conn: Connection) -> None:
    """Empty every table and put back the collection rows `create_all` starts with: the
    database as it is right after `create_all`, without creating anything again."""
    for table in reversed(metadata.sorted_tables):
        conn.execute(table.delete())
    _insert_collections(conn)


def _insert_collections(conn: Connection) -> None:
    conn.execute(
        virtual_provisioning_collection.insert(),
        [
            {"id": PROJECT_ID, "collection_type": "project", "cpus_provisioned": 0, "ram_provisioned": 0},
            {"id": SILO_ID, "collection_type": "silo", "cpus_provisioned": 0, "ram_provisioned": 0},
            {"id": FLEET_ID, "collection_type": "fleet", "cpus_provisioned": 0, "ram_provisioned": 0},
        ],
    )


PROJECT_ID = "00000000-0000-4000-8000-000000000001"
SILO_ID = "00000000-0000-4000-8000-000000000002"
FLEET_ID = "00000000-0000-4000-8000-000000000003"
