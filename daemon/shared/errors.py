"""Errors that point at the exact place in a spec: `path:line: field: message`.

A commit is rejected whole, with every problem listed at once, so validation collects `SpecIssue`s
instead of raising on the first one; `SpecErrors` carries them all to the CLI and the daemon status.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class SpecIssue:
    """One problem in one spec file. `line` is 0 when it cannot be known."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecErrors(Exception):
    """All the problems of one revision; the revision is rejected as a whole."""

    def __init__(self, issues: list[SpecIssue], partial: object = None):
        self.issues = sorted(set(issues))
        # What did validate (compose: the valid documents and the keys of the broken ones), so that later
        # checks such as unknown references can still run and every error is reported at once.
        self.partial = partial
        super().__init__("\n".join(str(i) for i in self.issues))


APPLY_FAILED = "ApplyFailed"  # the reason when an adapter names none


class ApplyError(Exception):
    """An action failed, Flux style: a `reason` (a CamelCase word such as `QualityFailed` or
    `BuildCrashed`) that reaches the resource's `Stalled` condition, and whether it is `transient`
    (retried with backoff) or not (fails at once). The message is scrubbed of every secret value specd
    resolved: an upstream that echoes a token must not put it in status."""

    def __init__(self, message: str, *, reason: str = APPLY_FAILED, transient: bool = False):
        from daemon.shared.scrub import scrub

        super().__init__(scrub(message))
        self.reason = reason or APPLY_FAILED
        self.transient = transient
