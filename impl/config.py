"""Run-time configuration shared by the datastore, the sagas and Nexus: revision and mutants.

The revision names (`baseline`, `rfd486`) and the mutant names come from `model.vocab`
(SPEC "How to read this document" and "Named defects"). Every mutant with `in_impl=True`
changes an implementation code path. `no-background-updater` (a model-level defect) is accepted
too: it makes every `instance-updater` activation a no-op, so traces using it can be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from model.vocab import MUTANTS, UsageError, check_mutants, check_revision

SUPPORTED_OUTSIDE_IMPL = frozenset({"no-background-updater"})


@dataclass(frozen=True)
class LifecycleConfig:
    """Which protocol revision to run and which named defects to switch on."""

    revision: str = "baseline"
    mutants: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        check_revision(self.revision)
        check_mutants(tuple(self.mutants))
        not_impl = [m for m in self.mutants if not MUTANTS[m].in_impl and m not in SUPPORTED_OUTSIDE_IMPL]
        if not_impl:
            raise UsageError(
                f"mutant(s) {', '.join(sorted(not_impl))} concern the model only; "
                "implementation mutants: "
                + ", ".join(sorted(n for n, m in MUTANTS.items() if m.in_impl))
            )

    def has(self, mutant: str) -> bool:
        """True when the named defect is switched on."""
        if mutant not in MUTANTS:
            raise UsageError(f"unknown mutant {mutant!r}")
        return mutant in self.mutants

    @property
    def rfd486(self) -> bool:
        return self.revision == "rfd486"
