"""A working control plane for the instance / VMM / migration / updater-lock lifecycle.

Layout (one protocol concept per module; SPEC sections in each docstring):

* `datastore/` — SQLAlchemy Core queries for SQLite and PostgreSQL: `updater_lock` (SPEC §5),
  `instance`, `vmm` (report path §4.1), `migration`, `provisioning` (§1.4), `sled_reservation`,
  `saga_log`, `effective_state` (§3).
* `executor/` — the durable Steno-like saga executor with fault outcomes.
* `sagas/` — instance-create, -start, -migrate, -delete, start-instance-update, instance-update
  and the pure `updates_required` (§4).
* `sled_agent/` — simulated sled-agents, VMMs, the switch and the report outbox (§2.1, §2.5).
* `nexus/` — a Nexus replica: external API, report path, failure marking (§4.1–§4.10).
* `background/` — instance-updater, abandoned-vmm-reaper, instance-watcher (§4.7–§4.9).
* `controller.py` — step-by-step execution for trace replay; `free_run.py` — threads.
* `invariants.py`, `testing.py` (the scripted demo of `lifecycle demo` lives in `lifecycle/demo_cmd.py`).
"""
