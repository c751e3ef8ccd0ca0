"""`update_saga_needed` (SPEC §4.1 step 2): does a report's *applied* change need an update saga?"""

from __future__ import annotations

from impl.datastore.vmm import VmmUpdateResult
from impl.sled_agent.report import SledVmmState
from model.vocab import MIGRATION_TERMINAL, update_terminal_states


def update_saga_needed(report: SledVmmState, result: VmmUpdateResult, revision: str) -> bool:
    """True iff a record really changed into a state an update saga must reconcile."""
    if result.vmm_updated and report.vmm_state.state in update_terminal_states(revision):
        return True
    if result.migration_in_updated and report.migration_in is not None:
        if report.migration_in.state in MIGRATION_TERMINAL:
            return True
    if result.migration_out_updated and report.migration_out is not None:
        if report.migration_out.state in MIGRATION_TERMINAL:
            return True
    return False
