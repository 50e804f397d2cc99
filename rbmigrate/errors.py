"""Exceptions and exit codes shared by the engine, the CLI and the TUI.

Every error the user can cause carries a short title (toast / modal title), a message that
says what was wrong and where, a hint that says what to do, and the exit code the CLI returns.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; they are an API (DESIGN §6), so never renumber them."""

    OK = 0
    VERIFY_FAILED = 1
    USAGE = 2
    CONNECTION = 3
    SCHEMA = 4
    INTERRUPTED = 130


class RbmigrateError(Exception):
    """Base class: an error with a message a person can act on."""

    exit_code: ExitCode = ExitCode.USAGE
    default_title: str = "rbmigrate error"

    def __init__(self, message: str, *, title: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.title = title or self.default_title
        self.hint = hint

    def as_dict(self) -> dict[str, str | None]:
        """Title, message and hint: what a report, a modal or a child process passes on."""
        return {"title": self.title, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  → {self.hint}"


class ConfigError(RbmigrateError):
    """A flag, a config file or an environment variable is wrong."""

    default_title = "Configuration error"


class SourceError(RbmigrateError):
    """The Chroma source cannot be read as asked (not a store, no such collection, ...)."""

    default_title = "Source problem"


class TargetConnectionError(RbmigrateError):
    """The target database cannot be reached or refuses our credentials."""

    exit_code = ExitCode.CONNECTION
    default_title = "Cannot connect"


class SourceConnectionError(RbmigrateError):
    """A Chroma server cannot be reached."""

    exit_code = ExitCode.CONNECTION
    default_title = "Cannot reach Chroma"


class SchemaError(RbmigrateError):
    """The target schema is missing or incompatible with the source."""

    exit_code = ExitCode.SCHEMA
    default_title = "Schema problem"


class VerificationFailed(RbmigrateError):
    """The target does not hold what the source holds, or too many records were rejected."""

    exit_code = ExitCode.VERIFY_FAILED
    default_title = "Verification failed"


class InternalError(RbmigrateError):
    """Something rbmigrate did not expect (a bug); the traceback is in the run's run.log."""

    default_title = "Internal error"


class Interrupted(RbmigrateError):
    """The user asked to stop; the run stopped between batches and can be resumed."""

    exit_code = ExitCode.INTERRUPTED
    default_title = "Interrupted"


class RunBusy(RbmigrateError):
    """Another process is migrating the same source into the same target right now."""

    default_title = "Run in progress"
