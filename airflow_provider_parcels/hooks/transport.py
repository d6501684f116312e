"""
What the five APIs share on the wire: the request and answer values, the reading of
rate-limit headers, the retry policy (tenacity), the size cap of an answer and the deadline
of one call, used alike by the sync hooks (requests, threads) and the async trigger (httpx,
asyncio).

A hostile or broken server must cost only the parcels it answers for: an answer is read
within one deadline per call (connect, headers and body together), never beyond a size cap,
never deeper than :data:`MAX_JSON_DEPTH`, and what it holds is handed on as values any
warehouse can store (no NaN, no NUL, no lone surrogate).
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import json
import math
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager, ProxyManager

from airflow_provider_parcels.hooks.exceptions import RetryableApiError
from airflow_provider_parcels.models import Parcel

#: No wait the API asks for is honoured beyond this many seconds; a longer one is clamped.
MAX_WAIT_SECONDS = 120.0
#: The largest answer read by default (extra ``max_response_mb`` changes it); a larger one is an error row.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: JSON nested deeper than this is refused before it is decoded: no tracking answer nests past ~10
#: levels, and a shallow tree stays safe to copy, serialize and store downstream.
MAX_JSON_DEPTH = 100
#: Bytes read from the network at a time.
READ_CHUNK_BYTES = 64 * 1024


class UnusableAnswer(RetryableApiError):
    """
    An answer that cannot be used and would be no better on another attempt (too large, nested
    too deep, a value the parser cannot read): its parcels get error rows at once, no retry.

    :param code: ``response_too_large`` or ``malformed_response``.
    :param message: a short human sentence, free of secrets.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


class QuotaExhaustedError(UnusableAnswer):
    """
    A day or month budget of the API key is spent (the ledger at zero, TrackingMore meta.code 4021,
    or a 429 whose reset is hours away): never retried; the parcels get error rows with code
    ``quota_exhausted`` at once, and nothing more is sent until the period resets.

    :param message: which quota, and when it resets.
    :param period: ``day`` or ``month``.
    :param resets_at: when the period resets (UTC), if known.
    """

    def __init__(self, message: str, period: str, resets_at: Any = None) -> None:
        super().__init__("quota_exhausted", message)
        self.period = period
        self.resets_at = resets_at


def is_retryable(error: BaseException) -> bool:
    """Whether tenacity should try the call again after ``error``."""
    return isinstance(error, RetryableApiError) and not isinstance(error, UnusableAnswer)


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
        """
        The body as JSON; a ``RetryableApiError('malformed_response')`` when it is not JSON, an
        ``UnusableAnswer`` when it nests deeper than :data:`MAX_JSON_DEPTH`. ``NaN``,
        ``Infinity`` and numbers too large for a float read as ``null``; NUL characters and
        lone surrogates in strings become U+FFFD, so every value can be stored as text.
        """
        if not self._parsed:
            self._json = decode_json(self.content, self.status_code)
            self._parsed = True
        return self._json


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = [1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256)]
#: ``\u0000``, an escaped surrogate, or a surrogate encoded as UTF-8 bytes (which json reads through).
_ODD_TEXT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")
_ODD_CHARS = re.compile("[\x00\ud800-\udfff]")


def json_depth(content: bytes) -> int:
    """
    How deep the arrays and objects of a JSON text nest, read from its brackets outside strings
    (about 1 ms for a 150 KiB answer: a scan in C, no decoding).
    """
    unescaped = content.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside_strings = b"".join(unescaped.split(b'"')[::2])
    skeleton = outside_strings.translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, skeleton)), default=0)


def _finite_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def decode_json(content: bytes, status_code: int = 200) -> Any:
    """
    Decode an answer's body (see :meth:`ApiResponse.json`): ``None`` for an empty body.

    :param content: the body.
    :param status_code: its HTTP status, for the error message.
    """
    if not content.strip():
        return None
    if content.count(b"[") + content.count(b"{") > MAX_JSON_DEPTH and json_depth(content) > MAX_JSON_DEPTH:
        raise UnusableAnswer(
            "malformed_response",
            f"the answer (HTTP {status_code}, {len(content)} bytes) nests deeper than {MAX_JSON_DEPTH} levels",
        )
    try:
        value = json.loads(content, parse_constant=lambda _name: None, parse_float=_finite_float)
    except RecursionError:
        raise UnusableAnswer(
            "malformed_response", f"the answer (HTTP {status_code}, {len(content)} bytes) nests too deep"
        ) from None
    except ValueError:
        raise RetryableApiError(
            "malformed_response",
            f"the answer (HTTP {status_code}, {len(content)} bytes) is not valid JSON",
        ) from None
    if (b"\\u" in content or b"\xed" in content) and _ODD_TEXT.search(content):
        value = _clean_strings(value)
    return value


def clean_text(value: str) -> str:
    """``value`` with NUL characters and lone surrogates (which no database stores) replaced by U+FFFD."""
    return _ODD_CHARS.sub("\ufffd", value)


def _clean_strings(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_clean_strings(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(k): _clean_strings(v) for k, v in value.items()}
    return value


class BodyReader:
    """
    Collects an answer's body up to a cap, on the sync and the async path alike.

    :param limit: the most bytes accepted.
    :param declared: the answer's ``Content-Length``, if any: a body announced larger than
        the cap is refused before a byte of it is read.
    :raises UnusableAnswer: ``response_too_large``.
    """

    def __init__(self, limit: int, declared: str | None = None) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self.size = 0
        try:
            announced = int(declared) if declared else None
        except ValueError:
            announced = None
        if announced is not None and announced > limit:
            raise self.too_large(f"it announces {announced} bytes")

    def too_large(self, detail: str) -> UnusableAnswer:
        return UnusableAnswer(
            "response_too_large",
            f"the answer is larger than the cap of {self.limit} bytes ({detail}); "
            "raise the connection's extra 'max_response_mb' if it is genuine",
        )

    def add(self, chunk: bytes) -> None:
        """Take one chunk; refuse the answer as soon as it passes the cap."""
        self.size += len(chunk)
        if self.size > self.limit:
            self._parts.clear()
            raise self.too_large(f"more than {self.limit} bytes arrived")
        self._parts.append(chunk)

    def content(self) -> bytes:
        return b"".join(self._parts)


def wait_from_headers(response: ApiResponse, now: float | None = None) -> float | None:
    """
    How long the API asks us to wait, in seconds, or ``None`` when it does not say.

    ``Retry-After`` as seconds or as an HTTP date comes first; else ``X-RateLimit-Reset`` read
    as epoch milliseconds (>= 1e12), epoch seconds (>= 1e9) or seconds to wait.
    A value that is not a finite number (``nan``, ``inf``) counts as not said; a huge one is
    returned as is, and every user clamps it (:data:`MAX_WAIT_SECONDS`).
    """
    now = time.time() if now is None else now
    retry_after = response.header("Retry-After")
    if retry_after:
        retry_after = retry_after.strip()
        try:
            seconds = float(retry_after)
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(retry_after).timestamp() - now)
            except (TypeError, ValueError, IndexError, OverflowError):
                pass
        else:
            if math.isfinite(seconds):
                return max(0.0, seconds)
    reset = response.header("X-RateLimit-Reset")
    if reset:
        try:
            value = float(reset.strip())
        except ValueError:
            return None
        if not math.isfinite(value):
            return None
        if value >= 1e12:
            return max(0.0, value / 1000.0 - now)
        if value >= 1e9:
            return max(0.0, value - now)
        return max(0.0, value)
    return None


def number_header(response: ApiResponse, name: str) -> float | None:
    """
    A count header (``X-RateLimit-Limit``, ``X-RateLimit-Remaining``) as a whole number, or
    ``None`` when absent or nonsense (not a number, not finite, negative).
    A fraction is rounded down: ``0.001`` requests left means none.
    """
    value = response.header(name)
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    if number is None or not math.isfinite(number) or number < 0:
        return None
    return float(math.floor(number))


def announced_limit(response: ApiResponse) -> float | None:
    """The quota an answer announces in ``X-RateLimit-Limit``, if any."""
    return number_header(response, "X-RateLimit-Limit")


def remaining_quota(response: ApiResponse) -> float | None:
    """What ``X-RateLimit-Remaining`` says is left of the current window, if the answer says."""
    return number_header(response, "X-RateLimit-Remaining")


#: tenacity 9.1 renamed the first backoff step ``initial`` -> ``multiplier`` (and warns on the old name).
_BACKOFF_STEP = "multiplier" if "multiplier" in inspect.signature(wait_exponential_jitter).parameters else "initial"


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
        backoff = wait_exponential_jitter(**{_BACKOFF_STEP: self.initial_backoff}, max=self.max_wait,
                                          jitter=self.initial_backoff)
        return backoff(state)

    def tenacity_kwargs(self, before_sleep: Any = None) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.max_retries + 1),
            "wait": self.wait,
            "retry": retry_if_exception(is_retryable),
            "reraise": True,
            "before_sleep": before_sleep,
        }


# ---------------------------------------------------------------------- one deadline per call


class AsyncDeadline(Protocol):
    """What :func:`async_deadline` returns: an async context manager that knows whether it fired."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: Any) -> Any: ...

    def expired(self) -> bool: ...


def async_deadline(seconds: float) -> AsyncDeadline:
    """
    Cancel the block after ``seconds`` and raise ``TimeoutError``: ``asyncio.timeout`` on Python
    3.11 and later, the same behaviour on 3.10 (which the package still supports).

    :param seconds: the time the block may take.
    """
    if sys.version_info >= (3, 11):
        return asyncio.timeout(seconds)
    return _CancelAfter(seconds)


class _CancelAfter:
    """``asyncio.timeout`` for Python 3.10: cancels the current task at the deadline."""

    def __init__(self, seconds: float) -> None:
        self._seconds = max(0.0, seconds)
        self._expired = False
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None

    def expired(self) -> bool:
        return self._expired

    def _fire(self) -> None:
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    async def __aenter__(self) -> _CancelAfter:
        self._task = asyncio.current_task()
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._fire)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._handle is not None:
            self._handle.cancel()
        if self._expired and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
        return False


class Deadline:
    """
    The deadline of one HTTP call: connect, headers and body together, however slowly the
    server drips them. On the sync path the sockets the call reads from are registered here and
    shut down by a watchdog thread when the deadline passes, which ends the blocked read at
    once; the async path simply cancels the call (``asyncio.timeout``).

    :param seconds: the time the whole call may take.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[Any] = []
        self._owned: list[socket.socket] = []
        self.ended = False
        self.fired = False

    @property
    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.at

    def watch(self, sock: Any, owned: bool = False) -> None:
        """
        Shut ``sock`` down when the deadline passes (at once if it has).

        :param sock: the socket.
        :param owned: close ``sock`` when the call ends (a duplicate made for watching).
        """
        with self._lock:
            if owned:
                self._owned.append(sock)
            if self.ended:
                return
            if not self.fired:
                self._sockets.append(sock)
                return
        _shutdown(sock)

    def fire(self) -> None:
        """The deadline passed: end every read of the call (the watchdog calls this)."""
        with self._lock:
            if self.ended or self.fired:
                return
            self.fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)

    def __enter__(self) -> Deadline:
        _current.deadline = self
        _WATCHDOG.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _current.deadline = None
        with self._lock:
            self.ended = True
            self._sockets = []
            owned, self._owned = self._owned, []
        for sock in owned:
            sock.close()


def _shutdown(sock: Any) -> None:
    try:
        if isinstance(sock, socket.socket):
            # the plain socket's shutdown, also for an SSLSocket (whose own would drop its TLS state
            # under a read in progress on another thread)
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError, ValueError):
        pass


class _Watchdog:
    """One daemon thread per process that fires the deadlines of sync calls in time order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="parcels-call-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].ended:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                deadline = heapq.heappop(self._heap)[2]
            deadline.fire()


_WATCHDOG = _Watchdog()
_current = threading.local()


def current_deadline() -> Deadline | None:
    """The deadline of the call this thread is making, if any."""
    return getattr(_current, "deadline", None)


class _DeadlineMixin:
    """
    A urllib3 connection that hands its socket to the call's deadline: a new one as soon as it
    is connected (so a stalled TLS handshake is ended too), a pooled one before the answer is read.
    """

    sock: Any

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        deadline = current_deadline()
        if deadline is not None:
            # a duplicate: TLS takes the socket object over (detaching it) before its handshake,
            # and shutting the duplicate down ends the shared connection all the same
            deadline.watch(sock.dup(), owned=True)
        return sock

    def getresponse(self) -> Any:
        deadline = current_deadline()
        if deadline is not None and self.sock is not None:
            deadline.watch(self.sock)
        return super().getresponse()  # type: ignore[misc]


class _DeadlineHTTPConnection(_DeadlineMixin, HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineMixin, HTTPSConnection):
    pass


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_DEADLINE_POOLS = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """
    The ``requests`` adapter of the sync hooks: its connections obey the :class:`Deadline` of
    the call in progress (direct and through an HTTP proxy), so a server that drips its answer
    cannot hold a call past it.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _DEADLINE_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:  # SOCKS managers have their own connection classes
            manager.pool_classes_by_scheme = _DEADLINE_POOLS
        return manager
