"""Seed states: where bounded checking starts.

Bounded model checking explores every path of up to N steps from each seed. Every seed is
itself reachable: it is defined as a sequence of actions from the fresh instance, replayed
through the concrete step function whenever it is used (with the checked revision and defects
switched on), so a counterexample found from a seed extends to one from the very beginning,
and trace files record that prefix. Starting from several seeds lets short bounds reach the
interesting situations (a running instance, a migration under way) that take a dozen routine
steps to set up.
"""

from __future__ import annotations

from dataclasses import dataclass

from .actions import Model
from .step import State, apply


def _start(saga: int, vmm: int) -> list[str]:
    nodes = ["ALLOC_SERVER", "CREATE_VMM_RECORD", "MARK_AS_STARTING", "DPD_ENSURE",
             "ENSURE_REGISTERED", "ADD_VIRTUAL_RESOURCES", "ENSURE_RUNNING"]
    return [f"user.instance_start(saga={saga}, vmm={vmm})"] + [
        f"instance-start.{n}(saga={saga}, outcome=ok)" for n in nodes]


CREATE = ["instance-create.MOVE_TO_STOPPED(outcome=ok)"]
RUN = _start(0, 0) + ["sled-agent.vmm_transition(vmm=0, to=RUNNING)",
                      "sled-agent.deliver_report(vmm=0, keep=0, update=none)"]
MIGRATE = ["user.instance_migrate(saga=0)"] + [
    f"instance-migrate.{n}(saga=0, outcome=ok)"
    for n in ("RESERVE_RESOURCES", "CREATE_VMM_RECORD", "CREATE_MIGRATION_RECORD",
              "SET_MIGRATION_IDS", "ENSURE_DESTINATION_PROPOLIS", "INSTANCE_MIGRATE")
] + ["sled-agent.deliver_report(vmm=1, keep=0, update=none)",
     "sled-agent.deliver_report(vmm=0, keep=0, update=none)"]

STARTING = _start(0, 0)[:6]  # through ENSURE_REGISTERED; the charge comes next
UNWOUND_MIGRATION = ["user.instance_migrate(saga=0)"] + [
    f"instance-migrate.{n}(saga=0, outcome=ok)"
    for n in ("RESERVE_RESOURCES", "CREATE_VMM_RECORD", "CREATE_MIGRATION_RECORD",
              "SET_MIGRATION_IDS")
] + ["instance-migrate.ENSURE_DESTINATION_PROPOLIS(saga=0, outcome=fail)",
       "unwind:instance-migrate(saga=0)"]
# two migrate sagas passed the API check together (it is advisory: SPEC §4.4); the first set
# its ids, failed and unwound; the second created its records and is about to take over the
# stale ids by case (c) of instance_set_migration_ids
MIGRATION_RACE = ["user.instance_migrate(saga=0)", "user.instance_migrate(saga=1)"] + [
    f"instance-migrate.{n}(saga=0, outcome=ok)"
    for n in ("RESERVE_RESOURCES", "CREATE_VMM_RECORD", "CREATE_MIGRATION_RECORD",
              "SET_MIGRATION_IDS")
] + ["instance-migrate.ENSURE_DESTINATION_PROPOLIS(saga=0, outcome=fail)",
     "unwind:instance-migrate(saga=0)"] + [
    f"instance-migrate.{n}(saga=1, outcome=ok)"
    for n in ("RESERVE_RESOURCES", "CREATE_VMM_RECORD", "CREATE_MIGRATION_RECORD")]
VMM_GONE = ["sled-agent.vmm_transition(vmm=0, to=DESTROYED)",
            "sled-agent.deliver_report(vmm=0, keep=0, update=started)"]

# a start saga charged, then its VMM was destroyed; the report's update saga released the
# charge, unlinked the VMM and committed NoVmm while the start saga still waits at
# ENSURE_RUNNING; the user has started the instance again (finding F5, docs/findings.md)
START_OUTLIVED = ["instance-start.ADD_VIRTUAL_RESOURCES(saga=0, outcome=ok)"] + VMM_GONE + [
    "start-instance-update.LOCK_INSTANCE(saga=0, outcome=ok)",
    "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA(saga=0, outcome=ok)"] + [
    f"instance-update.{n}(saga=0, outcome=ok)"
    for n in ("BECOME_UPDATER", "RECONCILE_RESOURCES", "COMMIT_INSTANCE_UPDATES",
              "DESTROY_ACTIVE_VMM")] + ["user.instance_start(saga=1, vmm=1)"]


def _update_saga(nodes: tuple[str, ...]) -> list[str]:
    """One update saga in slot 0, from its lock to its commit, every node succeeding."""
    return ["start-instance-update.LOCK_INSTANCE(saga=0, outcome=ok)",
            "start-instance-update.FETCH_STATE_AND_START_REAL_SAGA(saga=0, outcome=ok)"] + [
        f"instance-update.{n}(saga=0, outcome=ok)" for n in nodes]


# the migration to VMM 1 completes on both sleds; the source's report makes VMM 1 active (and
# moves the network to it), the target's report then clears the migration ids
MIGRATED = ["sled-agent.migration_target_completes(migration=0)",
            "sled-agent.migration_source_completes(migration=0)",
            "sled-agent.deliver_report(vmm=0, keep=0, update=started)"] + _update_saga(
    ("BECOME_UPDATER", "RECONCILE_RESOURCES", "COMMIT_INSTANCE_UPDATES")) + [
    "sled-agent.deliver_report(vmm=1, keep=0, update=started)"] + _update_saga(
    ("BECOME_UPDATER", "COMMIT_INSTANCE_UPDATES"))
# a second migration, from VMM 1 to VMM 2 (the third and last VMM slot), in progress
REMIGRATE = MIGRATE[:7] + ["sled-agent.deliver_report(vmm=2, keep=0, update=none)",
                           "sled-agent.deliver_report(vmm=1, keep=0, update=none)"]

SEEDS: dict[str, tuple[str, list[str]]] = {
    "fresh": ("right after CREATE_INSTANCE_RECORD: Creating, create saga pending", []),
    "stopped": ("created and stopped (NoVmm), no VMM yet", CREATE),
    "running": ("started: VMM 0 Running, charged, reserved, network on VMM 0", CREATE + RUN),
    "migrating": ("running, and a migration to VMM 1 in progress on both sleds",
                  CREATE + RUN + MIGRATE),
    "starting": ("a start saga has registered VMM 0 and is about to charge provisioning",
                 CREATE + STARTING),
    "stopping": ("running VMM 0 was destroyed; the report reached Nexus and started an "
                 "update saga", CREATE + RUN + VMM_GONE),
    "migration-unwound": ("running, after a migrate saga failed and unwound, leaving its ids, "
                          "a SagaUnwound target and a Failed/Failed migration",
                          CREATE + RUN + UNWOUND_MIGRATION),
}

# Seeds used only when named (`lifecycle verify --seed NAME`): their states have many sagas in
# flight, which makes every query from them slow, so the default run leaves them out.
OPT_IN_SEEDS: dict[str, tuple[str, list[str]]] = {
    "migration-race": ("running; of two migrate sagas admitted together, the first unwound "
                       "and left its ids, the second is about to take them over (§4.4 (c))",
                       CREATE + RUN + MIGRATION_RACE),
    "start-outlived": ("a start saga still waits at ENSURE_RUNNING after its VMM was destroyed "
                       "and the update saga stopped the instance; the user started it again",
                       CREATE + STARTING + START_OUTLIVED),
    "remigrating": ("migrated to VMM 1 (both reports in, the ids cleared), and a second "
                    "migration, to VMM 2, in progress on both sleds",
                    CREATE + RUN + MIGRATE + MIGRATED + REMIGRATE),
}
ALL_SEEDS = {**SEEDS, **OPT_IN_SEEDS}


class SeedError(RuntimeError):
    pass


def check_seed_names(names: list[str] | tuple[str, ...]) -> list[str]:
    """Validate seed names from the user; the error lists the valid ones."""
    from .vocab import UsageError

    bad = [n for n in names if n not in ALL_SEEDS]
    if bad:
        raise UsageError(f"unknown seed {', '.join(repr(b) for b in bad)}; valid seeds: "
                         + ", ".join(SEEDS) + "; opt-in: " + ", ".join(OPT_IN_SEEDS))
    return [n for n in ALL_SEEDS if n in names]  # the order of ALL_SEEDS, no duplicates


@dataclass
class Seed:
    name: str
    description: str
    prefix: list[str]
    state: State


def expand_step(model: Model, s: State, label: str) -> list[str]:
    """The actions a seed step stands for in state `s`: the step itself, or for
    `unwind:<saga>(saga=n)` the undo actions (outcome `undo`) that take that saga back to
    idle, in order."""
    if not label.startswith("unwind:"):
        return [label]
    kind, _, rest = label.removeprefix("unwind:").partition("(")
    slot = int(rest.rstrip(")").split("=")[1])
    out: list[str] = []
    for _ in range(32):
        nxt = None
        for i, a in enumerate(model.actions):
            if a.name.startswith(kind + ".") and a.arg("saga") == slot and \
                    a.arg("outcome") == "undo":
                nxt = apply(model, i, s)
                if nxt is not None:
                    out.append(a.label)
                    break
        if nxt is None:
            return out
        s = nxt
    raise SeedError(f"{label}: the saga did not finish unwinding")


def _unwind(model: Model, s: State, saga: str, seed: str) -> State:
    """Run the undo actions of one saga (e.g. `instance-migrate(saga=0)`) until it is idle."""
    try:
        labels = expand_step(model, s, "unwind:" + saga)
    except SeedError as e:
        raise SeedError(f"seed {seed!r}: {e}") from None
    for lab in labels:
        s = apply(model, model.action_index(lab), s) or s
    return s


def seed_states(model: Model, names: list[str] | None = None) -> list[Seed]:
    """The named seed states (by default those of SEEDS, without the opt-in ones), replayed
    from the fresh instance."""
    out = []
    for name, (desc, labels) in ALL_SEEDS.items():
        if (name not in names) if names is not None else (name not in SEEDS):
            continue
        s = model.layout.fresh_state()
        for lab in labels:
            if lab.startswith("unwind:"):
                s = _unwind(model, s, lab.removeprefix("unwind:"), name)
                continue
            try:
                i = model.action_index(lab)
            except KeyError as e:
                raise SeedError(f"seed {name!r}: {e}") from None
            t = apply(model, i, s)
            if t is None:
                raise SeedError(f"seed {name!r}: action {lab} is not enabled "
                                f"({model.cfg.describe()})")
            s = t
        out.append(Seed(name, desc, labels, s))
    return out
