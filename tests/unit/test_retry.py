"""daemon.shared.retry: bounded attempts, only the named exceptions, the last one re-raised unchanged."""

from __future__ import annotations

import pytest

from daemon.shared.retry import call_with_retries


def test_retries_the_named_error_then_succeeds() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("refused")
        return "ok"

    assert call_with_retries(flaky, attempts=3, backoff_s=0.001, retry_on=ConnectionError) == "ok" and len(calls) == 3


def test_gives_up_with_the_last_error_and_never_retries_others() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError(f"attempt {len(calls)}")

    with pytest.raises(ConnectionError, match="attempt 2"):
        call_with_retries(down, attempts=2, backoff_s=0.001, retry_on=ConnectionError)

    def refused() -> None:
        calls.append(1)
        raise PermissionError("401")

    calls.clear()
    with pytest.raises(PermissionError):
        call_with_retries(refused, attempts=5, backoff_s=0.001, retry_on=ConnectionError)
    assert len(calls) == 1
