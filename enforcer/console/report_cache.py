"""Short-lived results of the range-wide discovery queries, refreshed in the background.

Summing 30 days of rollups over 10,000 devices takes the store about a second, and those figures
change only when new discovery data is merged (the daemon does it every 30 s; uploads are
batches). So a table page answers from the last result (at most `ttl` seconds old, or being
refreshed by a background thread while the page answers from it) instead of making the admin wait
on every click. Only the first request for a range computes while the admin waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger("enforcer.console")


class ReportCache:
    """Results by key; stale ones are served while one background thread recomputes them."""

    MAX_ITEMS = 512
    """Beyond this many results the oldest are dropped (each range and table page is one)."""

    def __init__(self, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._items: dict[Hashable, tuple[float, Any]] = {}
        self._refreshing: set[Hashable] = set()
        self._computing: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The cached result for `key`, computing it now when there is none.

        Requests that miss the same key together wait for one computation (a dashboard opened by
        several admins at once, or right after the start-up warm-up began) instead of repeating it.
        """
        while True:
            with self._lock:
                found = self._items.get(key)
                stale = found is not None and self._clock() - found[0] > self.ttl
                if stale and key not in self._refreshing:
                    self._refreshing.add(key)
                    threading.Thread(target=self._refresh, args=(key, compute), daemon=True).start()
                if found is not None:
                    value: T = found[1]
                    return value
                running = self._computing.get(key)
                if running is None:
                    done = self._computing[key] = threading.Event()
                    break
            running.wait()  # then read what it stored (or compute, if it failed)
        try:
            value = compute()
            self._store(key, value)
            return value
        finally:
            with self._lock:
                del self._computing[key]
            done.set()

    def _store(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (self._clock(), value)
            while len(self._items) > self.MAX_ITEMS:
                del self._items[next(iter(self._items))]

    def _refresh(self, key: Hashable, compute: Callable[[], Any]) -> None:
        try:
            self._store(key, compute())
        except Exception as exc:  # keep serving the last good result; say why once
            log.warning("console_cache_refresh_failed", key=str(key), error=repr(exc))
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def clear(self) -> None:
        """Forget every result (after the store's tags changed: an applied plan)."""
        with self._lock:
            self._items.clear()
