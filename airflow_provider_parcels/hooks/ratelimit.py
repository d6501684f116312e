"""A thread-safe pacing token bucket shared by every thread (and coroutine) of one connection."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import ClassVar

from airflow_provider_parcels.hooks.transport import MAX_WAIT_SECONDS


def _sane_count(value: float | None) -> float | None:
    """A count from a header, rounded down; negative (requests in flight beyond it) stays negative."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(math.floor(value))


def _sane(value: float | None) -> float | None:
    """A number an API sent in a header, or ``None`` when it is not a finite number >= 0."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


class RateLimiter:
    """
    Paces requests so that no 60-second window holds more than the quota.

    A generic cell rate algorithm with a burst of one: request *k* may start no earlier than
    ``k * 60 / rate`` seconds after the first, so a sliding window, a fixed window and a token
    bucket on the server side all stay under the quota. ``reserve()`` books the slot and
    returns how long to wait, so the same limiter serves threads (``time.sleep``) and
    coroutines (``asyncio.sleep``).

    :param requests_per_minute: the quota, in cost units per minute; ``None`` means unknown
        (no pacing until the API tells us a limit).
    :param safety_margin: fraction of the quota left unused to absorb clock and network jitter.
    """

    def __init__(self, requests_per_minute: float | None, safety_margin: float = 0.02) -> None:
        self._lock = threading.Lock()
        self._next_free = 0.0
        self._paused_until = 0.0
        self._window_interval = 0.0
        self._window_until = 0.0
        self._sent: deque[tuple[float, float]] = deque(maxlen=20_000)
        self.learned = False
        self._limit_seen = 0.0
        self.safety_margin = safety_margin
        self.requests_per_minute = requests_per_minute

    @property
    def requests_per_minute(self) -> float | None:
        return self._rpm

    @requests_per_minute.setter
    def requests_per_minute(self, value: float | None) -> None:
        self._rpm = value
        self._interval = 60.0 / (value * (1 - self.safety_margin)) if value else 0.0

    def reserve(self, cost: float = 1.0) -> float:
        """Book the next slot for a request of ``cost`` units; return the seconds to wait first."""
        with self._lock:
            now = time.monotonic()
            interval = self._interval
            if now < self._window_until:
                interval = max(interval, self._window_interval)
            start = max(now, self._next_free, self._paused_until)
            self._next_free = start + cost * interval
            return start - now

    @property
    def configured(self) -> bool:
        """Whether the quota was given (plan or ``requests_per_minute``) rather than unknown or learned."""
        return self._rpm is not None and not self.learned

    def record(self, cost: float = 1.0) -> None:
        """Note that a request of ``cost`` units leaves now (to learn an unknown window)."""
        with self._lock:
            self._sent.append((time.monotonic(), cost))

    def note_remaining(self, remaining: float, cost: float) -> None:
        """Remember the largest window an answer implied (``remaining`` plus what it used)."""
        remaining = _sane(remaining)
        if remaining is None:
            return
        with self._lock:
            self._limit_seen = max(self._limit_seen, math.floor(remaining) + cost)

    def learn_from_refusal(self, limit: float | None, wait: float | None) -> None:
        """
        Learn an unknown quota from a refusal: the API allows ``limit`` units per window, and the
        oldest of our last ``limit`` units leaves its window in ``wait`` seconds, which dates the
        window's length. From then on requests are paced at ``limit`` per window.

        :param limit: ``X-RateLimit-Limit`` of the refusal; when the API sends none (TrackFlow),
            the largest window seen in ``X-RateLimit-Remaining`` stands in.
        :param wait: the wait the refusal asked for (clamped to ``MAX_WAIT_SECONDS``).

        Nonsense is ignored: a limit that is not a whole number of at least 1 (``0.001``,
        ``nan``, ``inf``, negative), a wait that is not a finite number; and the pace learned is
        never slower than one request per ``MAX_WAIT_SECONDS``.
        """
        limit, wait = _sane(limit), _sane(wait)
        if limit is not None:
            limit = math.floor(limit) if limit >= 1 else None
        if wait is None:
            return
        wait = min(wait, MAX_WAIT_SECONDS)
        with self._lock:
            limit = limit or self._limit_seen
            if not limit:
                return
            if self._rpm is not None and not self.learned:
                return
            now, total, oldest = time.monotonic(), 0.0, None
            for stamp, cost in reversed(self._sent):
                total += cost
                if total >= limit:
                    oldest = stamp
                    break
            if oldest is None:
                return
            window = now + wait - oldest
            if window > 0:
                # never slower than one request per MAX_WAIT_SECONDS, safety margin included
                rpm = max(60.0 * limit / window, 60.0 / (MAX_WAIT_SECONDS * (1 - self.safety_margin)))
                if self._rpm is None or rpm < self._rpm:
                    self.requests_per_minute = rpm
                    self.learned = True

    def follow_window(self, remaining: float, reset_in: float) -> None:
        """
        Spread what the API says is left of its current window evenly until the window resets
        (``X-RateLimit-Remaining`` and ``-Reset``), or hold back until then when nothing is left.
        How a client with an unknown quota avoids most 429s.

        :param remaining: requests (units) left, minus those already in flight; a fraction is
            rounded down (``0.001`` left means none).
        :param reset_in: seconds until the window resets (clamped to ``MAX_WAIT_SECONDS``).
        """
        remaining, reset_in = _sane_count(remaining), _sane(reset_in)
        if remaining is None or reset_in is None:
            return
        reset_in = min(reset_in, MAX_WAIT_SECONDS)
        with self._lock:
            now = time.monotonic()
            if remaining <= 0:
                self._paused_until = max(self._paused_until, now + reset_in)
                return
            self._window_interval = reset_in / remaining
            self._window_until = now + reset_in

    def pause(self, seconds: float) -> None:
        """Hold every request of this connection back for ``seconds`` (after a 429; clamped to ``MAX_WAIT_SECONDS``)."""
        seconds = _sane(seconds)
        if seconds is None:
            return
        seconds = min(seconds, MAX_WAIT_SECONDS)
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    # One limiter per connection and API in this process, so that hooks built for the same
    # connection (an operator and a sensor, or several threads) share the quota.
    _registry: ClassVar[dict[tuple[str, str], RateLimiter]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def for_connection(cls, provider: str, conn_id: str, requests_per_minute: float | None) -> RateLimiter:
        """The process-wide limiter of ``conn_id``; its rate follows the latest settings."""
        with cls._registry_lock:
            limiter = cls._registry.get((provider, conn_id))
            if limiter is None:
                limiter = cls._registry[(provider, conn_id)] = cls(requests_per_minute)
            elif requests_per_minute is not None and limiter.requests_per_minute != requests_per_minute:
                limiter.requests_per_minute = requests_per_minute
            return limiter
