"""Typed errors that carry what a human needs; they are rendered once, at the edge (CLI, API, daemon log).

`PermanentError` means retrying the same input cannot help (a bad policy, a stale plan);
`TemporaryError` means a later retry may succeed (the store is unreachable, the lock is taken).
"""

from __future__ import annotations

from dataclasses import dataclass


class EnforcerError(Exception):
    """Root of every error Enforcer raises on purpose."""


class PermanentError(EnforcerError):
    """The same input will fail again: report it and keep the last good state."""


class TemporaryError(EnforcerError):
    """A retry later may succeed."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where something was written: a file and a 1-based line (0 when unknown)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class PolicyError(PermanentError):
    """One problem in a policy file: ``file:line: field: message``."""

    def __init__(self, location: Location, field: str, message: str) -> None:
        self.location = location
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.location}: "
        return f"{where}{self.field}: {self.message}" if self.field else f"{where}{self.message}"

    def as_dict(self) -> dict[str, object]:
        """The same facts for JSON output and API problem details."""
        return {
            "file": self.location.file,
            "line": self.location.line,
            "field": self.field,
            "message": self.message,
        }


class PolicySetError(PermanentError):
    """Every problem found in a policy set; a set with any error is refused as a whole."""

    def __init__(self, errors: list[PolicyError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.location.file, e.location.line, e.field))
        count = len(self.errors)
        lines = "\n".join(str(e) for e in self.errors)
        super().__init__(f"{count} error{'s' if count != 1 else ''} in the policy set:\n{lines}")


class MassDeletionRefused(PermanentError):
    """The daemon will not apply a plan that deletes more than ``max_delete_share`` of the
    indicators on its own: an admin reviews it and applies it by hand (`enforcer apply`)."""


class StalePlanError(PermanentError):
    """A plan made against a revision that has since moved is refused."""

    def __init__(self, plan_revision: int, store_revision: int) -> None:
        self.plan_revision = plan_revision
        self.store_revision = store_revision
        super().__init__(
            f"the plan was made against revision {plan_revision} but the store is at revision "
            f"{store_revision}; run `enforcer plan` again"
        )


class SavedPlanMismatchError(PermanentError):
    """A saved plan that is not what the policy set gives against the store now."""


class StoreUrlError(PermanentError):
    """ENFORCER_DATABASE_URL names no store this build can open (said in one line)."""


class StoreUnavailableError(TemporaryError):
    """The indicator store cannot be reached."""
