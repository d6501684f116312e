"""Per-key sliding windows (60 seconds unless the settings shorten them)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class RateDecision:
    """The verdict on one request.

    :param allowed: whether the request goes through (and was counted).
    :param limit: the quota per window.
    :param remaining: what is left of the quota after this request.
    :param wait: seconds until the window frees room (for the oldest counted request to expire).
    """

    allowed: bool
    limit: int
    remaining: int
    wait: float


class SlidingWindowLimiter:
    """Counts weighted requests per bucket over the last 60 seconds.

    A refused request is not counted. A request heavier than the whole quota goes through when
    the window is empty (so a TrackFlow batch larger than an ``--rpm`` quota is not refused
    forever).

    :param clock: monotonic clock in seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[Hashable, deque[tuple[float, int]]] = {}
        self._used: dict[Hashable, int] = {}

    def reset(self) -> None:
        """Empty every window."""
        with self._lock:
            self._windows.clear()
            self._used.clear()

    def acquire(self, bucket: Hashable, limit: int, weight: int = 1,
                window_seconds: float = WINDOW_SECONDS) -> RateDecision:
        """Count ``weight`` against ``bucket`` if ``limit`` allows it.

        :param bucket: e.g. ``(api, key)``.
        :param limit: quota per 60 seconds.
        :param weight: 1 per request, or the number of items where items are counted.
        :param window_seconds: the window's length.
        """
        weight = max(1, weight)
        with self._lock:
            now = self._clock()
            window = self._windows.setdefault(bucket, deque())
            used = self._used.get(bucket, 0)
            while window and window[0][0] <= now - window_seconds:
                used -= window.popleft()[1]
            if used and used + weight > limit:
                self._used[bucket] = used
                need, freed, wait = used + weight - limit, 0, window_seconds
                for stamp, counted in window:
                    freed += counted
                    if freed >= need:
                        wait = stamp + window_seconds - now
                        break
                return RateDecision(False, limit, max(0, limit - used), max(wait, 0.0))
            window.append((now, weight))
            used += weight
            self._used[bucket] = used
            return RateDecision(True, limit, max(0, limit - used), window[0][0] + window_seconds - now)
