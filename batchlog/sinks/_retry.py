"""The one retry engine of the sinks that retry (HTTP, PostgreSQL): tenacity, configured once.

A sink says which failures are worth another attempt and, optionally, how long a failure
asks to wait (an HTTP ``Retry-After``); the engine adds the rest: a limit on attempts and
on total time, exponential backoff with jitter, an injectable ``sleep`` for tests.
tenacity is imported when a sink builds its engine, never by ``import batchlog.sinks``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from .._validate import check_int, check_seconds

if TYPE_CHECKING:
    import tenacity

__all__ = ["make_retrying"]

#: How long a failure asks to wait before the next attempt (None: the backoff decides).
RequestedWait = Callable[[BaseException], Optional[float]]


class _RequestedOrBackoff:
    """A tenacity wait: what the failure asks for, when it asks, else the backoff."""

    __slots__ = ("_backoff", "_requested")

    def __init__(
        self, backoff: Callable[[tenacity.RetryCallState], float], requested: RequestedWait
    ) -> None:
        self._backoff = backoff
        self._requested = requested

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            exc = outcome.exception()
            if exc is not None:
                wanted = self._requested(exc)
                if wanted is not None:
                    return wanted
        return self._backoff(retry_state)


def _no_request(_exc: BaseException) -> float | None:
    return None


def make_retrying(
    *,
    retryable: Callable[[BaseException], bool],
    max_attempts: int,
    max_retry_time: float | None,
    backoff_initial: float,
    backoff_max: float,
    backoff_jitter: float,
    sleep: Callable[[float], None],
    requested_wait: RequestedWait = _no_request,
) -> tenacity.Retrying:
    """Return a ``tenacity.Retrying`` that re-raises the last failure when it stops.

    It stops after ``max_attempts`` attempts, or when the next attempt would *start* after
    ``max_retry_time`` seconds (waits included), whichever comes first. The options are
    checked here, once for every sink, under the names the sinks take them by.

    Raises:
        ValueError: ``max_attempts`` is not an int >= 1, ``max_retry_time`` is not a
            number of seconds >= 0 or None, or a backoff option is not seconds >= 0.
    """
    max_attempts = check_int("max_attempts", max_attempts, low=1)
    max_retry_time = check_seconds("max_retry_time", max_retry_time, allow_none=True)
    backoff_initial = check_seconds("backoff_initial", backoff_initial)
    backoff_max = check_seconds("backoff_max", backoff_max)
    backoff_jitter = check_seconds("backoff_jitter", backoff_jitter)
    import tenacity

    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(max_attempts)
    if max_retry_time is not None:
        # Stop when the next attempt would START after the limit (waits included), not
        # only when a failed attempt ends after it.
        stop = stop | tenacity.stop_before_delay(max_retry_time)
    try:  # tenacity 9.2 renamed `initial` to `multiplier` and warns about the old name
        backoff = tenacity.wait_exponential_jitter(
            multiplier=backoff_initial, max=backoff_max, jitter=backoff_jitter
        )
    except TypeError:
        backoff = tenacity.wait_exponential_jitter(
            initial=backoff_initial, max=backoff_max, jitter=backoff_jitter
        )
    return tenacity.Retrying(
        stop=stop,
        wait=_RequestedOrBackoff(backoff, requested_wait),
        retry=tenacity.retry_if_exception(retryable),
        sleep=sleep,
        reraise=True,
    )
