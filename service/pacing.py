"""Provider limits: token buckets per channel and per sender, so a broadcast paces itself.

A relay that accepts N messages a second, or a Twilio number's messages-per-second, answers
4xx/429 to anything faster; a broadcast that ignores it turns into a retry storm. Each send waits
for a token from its channel's bucket and its sender's bucket (both when both are configured).
Waiters are served most urgent first, so priority-0 work leaves first within the budget.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from email.utils import parseaddr

from service.settings import RateLimit, Settings

Clock = Callable[[], float]


class TokenBucket:
    """`per_second` tokens a second, at most `burst` saved up; `acquire` waits for one.

    A burst above 1 lets a send whose turn came while the event loop was busy catch up with the
    schedule instead of losing its slot, so a paced lane holds its rate on a loaded machine.
    """

    def __init__(self, per_second: float, burst: int = 1, clock: Clock = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = burst
        self._clock = clock
        # One token to start, not `burst`: a broadcast that starts at once would otherwise open
        # ahead of the provider's own schedule and spend the slack it keeps for network jitter.
        self._tokens = 1.0
        self._at = clock()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # (priority, arrival, grant)
        self._arrivals = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def from_limit(cls, limit: RateLimit) -> TokenBucket:
        return cls(limit.per_second, limit.burst)

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, grant in self._waiters if not grant.done())

    async def acquire(self, priority: int = 0) -> None:
        """Take one token, waiting behind every more urgent (lower `priority`) waiter."""
        self._refill()
        if not self._waiters and self._tokens >= 1:
            self._tokens -= 1
            return
        grant: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._arrivals), grant))
        self._schedule()
        try:
            await grant
        except asyncio.CancelledError:
            if grant.done() and not grant.cancelled():
                self._tokens += 1  # granted just as we were cancelled: give it back
            raise

    def release_due(self) -> None:
        """Grant tokens to waiters, most urgent first, as far as the bucket holds them."""
        self._timer = None
        self._refill()
        while self._waiters and self._tokens >= 1:
            _, _, grant = heapq.heappop(self._waiters)
            if grant.done():
                continue
            self._tokens -= 1
            grant.set_result(None)
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)
        if self._waiters:
            self._schedule()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.per_second)
        self._at = now

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        delay = max(0.0, (1 - self._tokens) / self.per_second)
        self._timer = asyncio.get_running_loop().call_later(delay, self.release_due)


class Pacer:
    """The buckets a channel's sends pass through: its own and its sender's."""

    def __init__(self, buckets: dict[str, list[TokenBucket]]) -> None:
        self._buckets = buckets

    @classmethod
    def from_settings(cls, settings: Settings) -> Pacer:
        limits = settings.rate_limits
        buckets: dict[str, list[TokenBucket]] = {}
        senders: dict[str, TokenBucket] = {}
        for channel in ("email", "sms", "webhook", "sandbox"):
            chosen = []
            if channel in limits.channels:
                chosen.append(TokenBucket.from_limit(limits.channels[channel]))
            sender = sender_of(settings, channel)
            if sender is not None and sender in limits.senders:
                # A sender shared by two channels shares one bucket.
                chosen.append(senders.setdefault(sender, TokenBucket.from_limit(limits.senders[sender])))
            if chosen:
                buckets[channel] = chosen
        return cls(buckets)

    def paced(self, channel: str) -> bool:
        return channel in self._buckets

    def per_second(self, channel: str) -> float | None:
        """The channel's effective rate (its slowest bucket), or None when it is not paced."""
        buckets = self._buckets.get(channel)
        return min(b.per_second for b in buckets) if buckets else None

    async def acquire(self, channel: str, priority: int) -> None:
        for bucket in self._buckets.get(channel, ()):
            await bucket.acquire(priority)


def sender_of(settings: Settings, channel: str) -> str | None:
    """Who the provider counts a message against: the SMTP envelope sender, the Twilio
    Messaging Service (it pools its numbers) or else the from number."""
    if channel == "email":
        return parseaddr(settings.smtp.from_address)[1] or None
    if channel == "sms":
        return settings.twilio.messaging_service_sid or settings.twilio.from_number
    return None
