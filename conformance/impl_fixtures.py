"""Helpers for tests, the stress run and the benchmark: database URLs and fault-injection drives.

PostgreSQL is used when `LIFECYCLE_PG_URL` is set; each run gets its own schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from impl.controller import Controller
from impl.executor.dag import Outcome, StepInfo
from model.vocab import ExternalState

PG_ENV = "LIFECYCLE_PG_URL"
PG_SKIP_REASON = (
    "LIFECYCLE_PG_URL not set: PostgreSQL tests need a server "
    "(e.g. LIFECYCLE_PG_URL=postgresql+psycopg://root@127.0.0.1:5432/test)"
)


def pg_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def unique_schema(prefix: str = "lc_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@dataclass
class Backend:
    """Where a test's database lives: `url` plus, for PostgreSQL, a private schema."""

    url: str
    pg_schema: str | None = None

    @property
    def name(self) -> str:
        return "postgres" if self.pg_schema else "sqlite"


def backend(kind: str) -> Backend:
    """A fresh backend of `kind` ("sqlite" or "postgres"); postgres needs `pg_url()`."""
    if kind == "sqlite":
        return Backend("sqlite://")
    url = pg_url()
    if url is None:
        raise RuntimeError(PG_SKIP_REASON)
    return Backend(url, unique_schema())


def controller(b: Backend, revision: str = "baseline", mutants: Iterable[str] = (), **kw: object) -> Controller:
    return Controller(db_url=b.url, pg_schema=b.pg_schema, revision=revision, mutants=mutants, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- scenario building
def running_instance(c: Controller, name: str = "inst") -> str:
    """Create and start an instance and let it reach Running."""
    iid, sid = c.create_instance(name)
    c.run_saga(sid)
    c.start_instance(iid)
    c.settle()
    assert c.external_state(iid) == ExternalState.RUNNING, c.external_state(iid)
    return iid


def stopped_instance(c: Controller, name: str = "inst") -> str:
    iid, sid = c.create_instance(name)
    c.run_saga(sid)
    c.settle()
    return iid


def destroy_active_vmm_without_sagas(c: Controller, instance_id: str) -> None:
    """Stop the instance and let the sled report Destroyed, leaving the update sagas unrun."""
    c.stop_instance(instance_id)
    for _ in range(10):
        for vid in c.advanceable_vmms():
            c.vmm_advance(vid)
        c.deliver_all_reports()
        if not c.advanceable_vmms() and not c.pending_reports():
            break


@dataclass
class Fault:
    """Inject `outcome` the first time saga `saga_name` reaches node `node_name` (`direction`)."""

    saga_name: str
    node_name: str
    outcome: Outcome
    direction: str = "forward"
    recover_on: str | None = None  # replica that recovers after a crash (None = the same one)
    fired: bool = False

    def matches(self, info: StepInfo) -> bool:
        return (
            not self.fired
            and info.saga_name == self.saga_name
            and info.node_name == self.node_name
            and (info.direction == self.direction or (self.direction == "forward" and info.direction == "finish"))
        )


def drive(c: Controller, fault: Fault | None = None, max_steps: int = 10_000) -> None:
    """Run every saga (oldest first) with OK except where `fault` fires; recover after crashes."""
    for _ in range(max_steps):
        todo = c.runnable()
        if not todo:
            return
        info = todo[0]
        outcome = Outcome.OK
        if fault is not None and fault.matches(info):
            fault.fired = True
            outcome = fault.outcome
        rep = c.step(info.saga_id, outcome)
        if rep.event == "crashed":
            assert fault is not None
            c.recover_nexus(info.owner, on=fault.recover_on)
    raise RuntimeError("drive: step budget exhausted")


def node_names(c: Controller, saga_id: str) -> list[str]:
    row = c.datastore.saga_fetch(saga_id)
    assert row is not None
    return [n.name for n in c.nexus(row.owner).executor.registry[row.name](row.params)]


Scenario = Callable[[Controller], str]
