"""The one exception family the command line turns into a message and an exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2  # plan --detailed-exitcode: changes present
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class ReconcilerError(Exception):
    """An error a user can act on; its message says what to do next."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(ReconcilerError):
    """reconcile.toml, the environment or an option is wrong."""


class PlatformError(ReconcilerError):
    """The platform cannot be reached, is not a reconciler platform, or refused a seed."""

    # True when a change may have taken effect although no answer came back (a submit over a network).
    outcome_unknown = False


class RequestConflict(PlatformError):
    """A submit under an id the platform knows with another body: someone else submitted it (HTTP 409)."""

    def __init__(self, request_id: str, message: str) -> None:
        super().__init__(message, hint="the move's next attempt gets a new request id: run apply again")
        self.request_id = request_id


class StateError(ReconcilerError):
    """The state file cannot be read or written."""


class LockHeld(StateError):
    """Another process holds the state lock."""


class StalePlan(ReconcilerError):
    """A saved plan no longer matches the state, the platform or its manifests."""


class Interrupted(ReconcilerError):
    """A signal stopped the run between two moves."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
