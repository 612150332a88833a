"""An in-memory token bucket per client address, for the unauthenticated writes: device
enrolment and console sign-in (one bucket serves both, so one address gets one budget).

In memory on purpose: it protects one server process from a guessing loop; several processes
each allow the rate, which is still far below what guessing a 16+ character secret needs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """`rate` requests per `period` seconds per key, with bursts up to `rate`."""

    MAX_KEYS = 10_000

    def __init__(
        self, rate: int, period: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = float(rate)
        self.refill = rate / period
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def waiting(self, key: str) -> float:
        """Seconds until `key` has a token again (0.0 when it has one), spending nothing."""
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.refill)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.refill

    def take(self, key: str, cost: float = 1.0) -> float:
        """Spend `cost` tokens for `key` (at most the bucket's size): 0.0 if allowed, else the
        seconds until they are available."""
        cost = min(cost, self.capacity)
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - stamp) * self.refill)
            if tokens < cost:
                self._buckets[key] = (tokens, now)
                return (cost - tokens) / self.refill
            self._buckets[key] = (tokens - cost, now)
            if len(self._buckets) > self.MAX_KEYS:
                self._prune(now)
        return 0.0

    def _prune(self, now: float) -> None:
        """Forget keys whose bucket has refilled (they behave exactly as unseen keys)."""
        full = [
            k for k, (t, s) in self._buckets.items() if t + (now - s) * self.refill >= self.capacity
        ]
        for key in full:
            del self._buckets[key]
