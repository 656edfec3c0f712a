"""Retry policy: tenacity decides the wait and the stop; the dispatcher stores the result as
`next_attempt_at`, so a retry survives a restart instead of living in a sleeping coroutine."""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import RetryCallState, stop_after_attempt, stop_after_delay, wait_exponential_jitter
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from service.settings import DispatchSettings


@dataclass(frozen=True)
class RetryPolicy:
    wait: wait_base
    stop: stop_base

    @classmethod
    def from_settings(cls, settings: DispatchSettings) -> RetryPolicy:
        return cls(
            wait=wait_exponential_jitter(
                multiplier=settings.backoff_initial, max=settings.backoff_max, jitter=settings.backoff_jitter
            ),
            stop=stop_after_attempt(settings.max_attempts) | stop_after_delay(settings.deadline_seconds),
        )

    def next_attempt_at(self, attempts: int, first_planned_at: float, now: float) -> float | None:
        """When to try again after `attempts` failed tries, or None when it is time to give up."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempts
        state.start_time = first_planned_at
        state.outcome_timestamp = now
        if self.stop(state):
            return None
        return now + self.wait(state)
