"""Counters of one hook's traffic, and the progress line long runs print to the task log."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class TrackingStats:
    """
    Thread-safe counters of a hook's calls: what the benchmarks read and the log line shows.

    :param progress_interval: seconds between two progress lines in the log.
    """

    def __init__(self, progress_interval: float = 10.0) -> None:
        self._lock = threading.Lock()
        self.progress_interval = progress_interval
        self.reset()

    def reset(self, total: int | None = None) -> None:
        with self._lock:
            self.total = total
            self.parcels_done = 0
            self.requests = 0
            self.rate_limited = 0
            self.retries = 0
            self.quota_exhausted = 0
            self.ledger_seconds = 0.0
            self.quota_wait_seconds = 0.0
            self.in_flight = 0
            self.started = time.monotonic()
            self._last_log = self.started

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            elapsed = time.monotonic() - self.started
            return {
                "parcels": self.parcels_done,
                "requests": self.requests,
                "rate_limited": self.rate_limited,
                "retries": self.retries,
                "quota_exhausted": self.quota_exhausted,
                "ledger_ms": round(self.ledger_seconds * 1000, 3),
                "quota_wait_seconds": round(self.quota_wait_seconds, 3),
                "seconds": round(elapsed, 3),
            }

    def maybe_log(self, log: logging.Logger, provider: str, force: bool = False) -> None:
        """Log ``done of total, rate, requests, 429s, retries, ETA`` at most every interval."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last_log < self.progress_interval:
                return
            self._last_log = now
            elapsed = max(now - self.started, 1e-9)
            rate = self.parcels_done / elapsed * 60
            total = f" of {self.total}" if self.total else ""
            eta = ""
            if self.total and self.parcels_done and self.total > self.parcels_done:
                eta = f", ETA {(self.total - self.parcels_done) / (rate / 60):.0f} s"
            line = (
                f"{provider}: {self.parcels_done}{total} parcels tracked, {rate:.0f} parcels/min, "
                f"{self.requests} requests, {self.rate_limited} rate-limited (429), {self.retries} retries{eta}"
            )
        log.info(line)
