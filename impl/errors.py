"""Errors the implementation raises, named after the omicron error kinds they stand for.

External API errors (SPEC §4.2–§4.5) are `Conflict` (HTTP 409), `BadRequest` (400),
`NotFound` (404) and `InternalError` (500). Lock errors are SPEC §5's `UpdaterLockError`.
Sled-agent errors distinguish a healthy 4xx reply (`SledNoSuchInstance`) from an
"unhealthy" sled (`SledUnavailable`), which is what decides `mark_instance_failed` (§4.10).
"""

from __future__ import annotations


class LifecycleError(Exception):
    """Base class of every error the implementation raises on purpose."""


class ApiError(LifecycleError):
    """An error an external API call returns; carries the HTTP status it stands for."""

    status = 500


class Conflict(ApiError):
    status = 409


class BadRequest(ApiError):
    status = 400


class NotFound(ApiError):
    status = 404


class InternalError(ApiError):
    status = 500


class InsufficientCapacity(ApiError):
    status = 507


class UpdaterLockError(LifecycleError):
    """SPEC §5: lock acquisition failed because of a query error (e.g. instance deleted)."""


class AlreadyLocked(UpdaterLockError):
    """SPEC §5: another updater holds the instance-updater lock."""


class SledAgentError(LifecycleError):
    """Base class of errors a simulated sled-agent call returns."""


class SledNoSuchInstance(SledAgentError):
    """404 NO_SUCH_INSTANCE: the sled does not know the VMM (`vmm_gone()`, SPEC §4.9)."""


class SledUnavailable(SledAgentError):
    """A communication error or 5xx: the "unhealthy" case of SPEC §4.3 / §4.10."""


class InjectedFailure(LifecycleError):
    """A failure injected by a fault hook (SPEC "Saga semantics": fail before/after effect)."""


class NexusCrashed(BaseException):
    """Raised inside a Nexus replica to model a process crash.

    A `BaseException` so that no `except Exception` in saga actions swallows it: the crash
    unwinds the Python stack to the executor, which drops every in-memory state of the replica.
    """

    def __init__(self, nexus_id: str, where: str) -> None:
        super().__init__(f"nexus {nexus_id} crashed {where}")
        self.nexus_id = nexus_id
        self.where = where


class NexusPanic(BaseException):
    """A Rust `panic!` in Nexus code. Nexus is built to abort on panic, so the saga executor
    turns this into `NexusCrashed`: the replica dies, and recovery re-executes the node."""


class NexusUnavailable(ApiError):
    """The Nexus replica addressed is down (crashed and not yet recovered)."""

    status = 503
