"""How hard the API client tries, and how fast it may go: plain values, cheap to import
(``plan`` and the settings read them without loading an HTTP client)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.bucket import LeakyBucket
from engine.defaults import API_BURST, API_RATE, RETRY_BUDGET
from engine.errors import RateLimited


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries before giving up (SPEC §5: ≥ 8 tries within ~60 s)."""

    attempts: int = 10
    budget: float = RETRY_BUDGET
    wait_initial: float = 0.1
    wait_max: float = 5.0
    wait_jitter: float = 0.5

    def wait_before(self, attempt: int, failure: Exception, elapsed: float) -> float | None:
        """Seconds to wait before try number ``attempt`` after ``failure``, or ``None`` when
        the tries or the time budget are spent: a 429's ``Retry-After`` if it gave one,
        else exponential backoff with jitter."""
        if attempt > self.attempts:
            return None
        if isinstance(failure, RateLimited) and failure.retry_after is not None:
            wait = failure.retry_after
        else:
            backoff = self.wait_initial * 2 ** max(attempt - 2, 0)
            wait = min(self.wait_max, backoff) + random.uniform(0, self.wait_jitter)
        return wait if elapsed + wait <= self.budget else None


@dataclass(frozen=True)
class RateLimit:
    """The platform's leaky bucket: ``burst`` requests, refilling at ``rate`` per second.

    The client keeps some headroom below it: the server measures arrivals, the client
    measures departures, and the two clocks never agree exactly.
    """

    rate: float = API_RATE
    burst: float = API_BURST
    headroom: float = 0.9

    def limiter(self) -> LeakyBucket:
        capacity = max(1.0, self.burst * self.headroom)
        return LeakyBucket(capacity, self.rate * (1 - (1 - self.headroom) / 3))
