"""Request statistics per API, read through ``GET /_sandbox/stats``."""

from __future__ import annotations

import threading
import time
from collections import Counter


def _blank() -> dict:
    return {
        "requests": 0,
        "items": 0,
        "status_counts": Counter(),
        "rate_limited": 0,
        "max_batch": 0,
        "in_flight": 0,
        "max_in_flight": 0,
        "faults": Counter(),
        "by_endpoint": Counter(),
        # wall-clock seconds (epoch) of the first request's arrival and the last answer: the interval a
        # benchmark measures quota use over when the clients are other processes (e.g. Celery workers)
        "first_request_at": None,
        "last_answer_at": None,
    }


class Stats:
    """Thread-safe counters, one set per API.

    :param apis: the API names.
    """

    def __init__(self, apis: list[str]) -> None:
        self._apis = list(apis)
        self._lock = threading.Lock()
        self._data: dict[str, dict] = {}
        self.reset()

    def reset(self) -> None:
        """Zero everything (requests in flight stay counted until they end)."""
        with self._lock:
            flying = {api: self._data.get(api, {}).get("in_flight", 0) for api in self._apis}
            self._data = {api: _blank() for api in self._apis}
            for api, count in flying.items():
                self._data[api]["in_flight"] = count

    def begin(self, api: str, endpoint: str, items: int) -> None:
        """A request arrived."""
        with self._lock:
            data = self._data[api]
            data["requests"] += 1
            if data["first_request_at"] is None:
                data["first_request_at"] = time.time()
            data["items"] += items
            data["max_batch"] = max(data["max_batch"], items)
            data["by_endpoint"][endpoint] += 1
            data["in_flight"] += 1
            data["max_in_flight"] = max(data["max_in_flight"], data["in_flight"])

    def end(self, api: str, status: int | None) -> None:
        """A request was answered with ``status`` (None: the connection was reset)."""
        with self._lock:
            data = self._data[api]
            data["in_flight"] = max(0, data["in_flight"] - 1)
            data["last_answer_at"] = time.time()
            if status is not None:
                data["status_counts"][str(status)] += 1

    def fault(self, api: str, kind: str) -> None:
        """A fault of ``kind`` was injected."""
        with self._lock:
            self._data[api]["faults"][kind] += 1

    def rate_limited(self, api: str) -> None:
        """A quota refusal was sent."""
        with self._lock:
            self._data[api]["rate_limited"] += 1

    def snapshot(self) -> dict:
        """Per API counters plus ``total_requests``, JSON-ready."""
        with self._lock:
            result: dict = {}
            for api, data in self._data.items():
                result[api] = {key: dict(value) if isinstance(value, Counter) else value
                               for key, value in data.items()}
            result["total_requests"] = sum(data["requests"] for data in self._data.values())
            return result
