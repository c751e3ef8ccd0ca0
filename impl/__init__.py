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
* `controller.py` — step-by-step execution for trace replay; `nexus/free_running.py` — each
  replica's saga-runner and background-task threads, for running freely.
* `invariants.py` — the database invariants a settled run must satisfy; `history.py` — the
  recorder of database-level events (docs/history-validation.md).

What drives the implementation from outside lives elsewhere: the stress driver, its history
recorder run and the test fixtures in `conformance/` (`free_run.py`, `history_run.py`,
`impl_fixtures.py`), the scripted demo of `lifecycle demo` in `lifecycle/demo_cmd.py`.
"""
