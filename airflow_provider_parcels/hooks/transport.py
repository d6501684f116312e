"""
What the five APIs share on the wire, free of any HTTP client: the request and answer
values, the reading of rate-limit headers, and the retry policy (tenacity) used alike by
the sync hooks (requests, threads) and the async trigger (httpx, asyncio).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from tenacity import RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from airflow_provider_parcels.hooks.exceptions import RetryableApiError
from airflow_provider_parcels.models import Parcel

#: No wait the API asks for is honoured beyond this many seconds; a longer one is clamped.
MAX_WAIT_SECONDS = 120.0


@dataclass(frozen=True)
class ApiRequest:
    """
    One HTTP call, as data: built by an API module, sent by the sync or the async client.

    :param method: HTTP method.
    :param path: path below the connection's base URL, starting with ``/``.
    :param params: query parameters.
    :param json: JSON body.
    :param parcels: the parcels this call asks about (empty for calls that track nothing).
    :param cost: quota units the call uses (TrackFlow counts each parcel of a batch).
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    parcels: tuple[Parcel, ...] = ()
    cost: int = 1

    def find(self, tracking_number: Any, carrier: Any = None) -> Parcel | None:
        """The parcel of this request with that number (and carrier, when given and matching)."""
        number = str(tracking_number or "").strip().upper()
        candidates = [p for p in self.parcels if p.tracking_number.upper() == number]
        if carrier and len(candidates) > 1:
            same = [p for p in candidates if p.carrier.lower() == str(carrier).lower()]
            candidates = same or candidates
        return candidates[0] if candidates else None


@dataclass
class ApiResponse:
    """
    One HTTP answer, as data.

    :param status_code: HTTP status.
    :param headers: response headers (looked up case-insensitively).
    :param content: the body.
    """

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    _json: Any = field(default=None, repr=False)
    _parsed: bool = field(default=False, repr=False)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    def json(self) -> Any:
        """The body as JSON; a ``RetryableApiError('malformed_response')`` when it is not."""
        if not self._parsed:
            if not self.content.strip():
                self._json = None
            else:
                try:
                    self._json = json.loads(self.content)
                except ValueError:
                    raise RetryableApiError(
                        "malformed_response",
                        f"the answer (HTTP {self.status_code}, {len(self.content)} bytes) is not valid JSON",
                    ) from None
            self._parsed = True
        return self._json


def wait_from_headers(response: ApiResponse, now: float | None = None) -> float | None:
    """
    How long the API asks us to wait, in seconds, or ``None`` when it does not say.

    ``Retry-After`` as seconds or as an HTTP date comes first; else ``X-RateLimit-Reset`` read
    as epoch milliseconds (>= 1e12), epoch seconds (>= 1e9) or seconds to wait.
    """
    now = time.time() if now is None else now
    retry_after = response.header("Retry-After")
    if retry_after:
        retry_after = retry_after.strip()
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(retry_after).timestamp() - now)
            except (TypeError, ValueError, IndexError):
                pass
    reset = response.header("X-RateLimit-Reset")
    if reset:
        try:
            value = float(reset.strip())
        except ValueError:
            return None
        if value >= 1e12:
            return max(0.0, value / 1000.0 - now)
        if value >= 1e9:
            return max(0.0, value - now)
        return max(0.0, value)
    return None


def number_header(response: ApiResponse, name: str) -> float | None:
    """A numeric header (``X-RateLimit-Limit``, ``X-RateLimit-Remaining``), or ``None``."""
    value = response.header(name)
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def announced_limit(response: ApiResponse) -> float | None:
    """The quota an answer announces in ``X-RateLimit-Limit``, if any."""
    return number_header(response, "X-RateLimit-Limit")


def remaining_quota(response: ApiResponse) -> float | None:
    """What ``X-RateLimit-Remaining`` says is left of the current window, if the answer says."""
    return number_header(response, "X-RateLimit-Remaining")


@dataclass(frozen=True)
class RetryPolicy:
    """
    How often and how long to retry one call; builds tenacity keyword arguments for
    ``Retrying`` and ``AsyncRetrying`` alike.

    :param max_retries: retries after the first attempt.
    :param initial_backoff: first exponential backoff step, in seconds.
    :param max_wait: clamp for every wait, requested or computed.
    """

    max_retries: int = 6
    initial_backoff: float = 0.5
    max_wait: float = MAX_WAIT_SECONDS

    def wait(self, state: RetryCallState) -> float:
        """Honour the API's requested wait (clamped, small jitter), else backoff with jitter."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryableApiError) and error.wait is not None:
            return min(self.max_wait, error.wait + random.uniform(0, 0.25))
        backoff = wait_exponential_jitter(initial=self.initial_backoff, max=self.max_wait, jitter=self.initial_backoff)
        return backoff(state)

    def tenacity_kwargs(self, before_sleep: Any = None) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.max_retries + 1),
            "wait": self.wait,
            "retry": retry_if_exception_type(RetryableApiError),
            "reraise": True,
            "before_sleep": before_sleep,
        }
