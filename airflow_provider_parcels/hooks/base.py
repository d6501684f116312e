"""
The base of the five tracking hooks: connection, session, quota, retries, concurrency,
batching and the one-result-per-parcel guarantee.

An API module subclasses :class:`ParcelTrackingHook` and supplies only what is its own:
class attributes (connection type, default URL, plans, batch limit), ``auth_headers``,
``build_batch_request``, ``parse_track_response`` and its ``StatusMap``; optionally
``check_answer`` for errors hidden in an HTTP 200. Everything here that reads an answer is
pure, so the sync path (requests, threads) and the async path of the trigger (httpx,
asyncio) share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import requests
from airflow.sdk import BaseHook
from tenacity import AsyncRetrying, RetryCallState, Retrying

from airflow_provider_parcels import __version__
from airflow_provider_parcels.hooks.exceptions import (
    ParcelApiAuthError,
    ParcelConnectionError,
    RequestRejected,
    RetryableApiError,
)
from airflow_provider_parcels.hooks.parsing import StatusMap
from airflow_provider_parcels.hooks.progress import TrackingStats
from airflow_provider_parcels.hooks.ratelimit import RateLimiter
from airflow_provider_parcels.hooks.redaction import Redactor
from airflow_provider_parcels.hooks.settings import HookSettings, Plan, build_base_url, resolve_settings
from airflow_provider_parcels.hooks.transport import (
    MAX_WAIT_SECONDS,
    READ_CHUNK_BYTES,
    ApiRequest,
    ApiResponse,
    BodyReader,
    Deadline,
    DeadlineAdapter,
    QuotaExhaustedError,
    UnusableAnswer,
    announced_limit,
    async_deadline,
    remaining_quota,
    wait_from_headers,
)
from airflow_provider_parcels.models import (
    InvalidParcelError,
    Parcel,
    ParcelStatus,
    TrackingError,
    TrackingResult,
)
from airflow_provider_parcels.quota import (
    QuotaExhausted,
    QuotaLedger,
    QuotaLimits,
    QuotaStatus,
    credential_hash,
    quota_store_of,
    resolve_limits,
)

if TYPE_CHECKING:
    import pandas as pd

USER_AGENT = f"airflow-provider-parcels/{__version__}"
#: Rate-limit windows up to this long are followed from the answers' headers; a counter that resets later
#: is a day or month budget, and a refusal that asks to wait longer means such a budget is spent.
FOLLOWED_WINDOW_SECONDS = 120.0
#: A budget counter resetting within this many seconds is read as the day's, a later one as the month's.
DAY_COUNTER_SECONDS = 26 * 3600.0
#: Resets further away than this (a month and a day) are nonsense and ignored.
LONGEST_RESET_SECONDS = 32 * 86_400.0
#: What identifies one question to an API (see ``answer_key``).
_Key = tuple[str, ...]


class _Secret(str):
    """A credential: a ``str`` whose ``repr`` never shows it."""

    def __repr__(self) -> str:
        return "'***'"


class ParcelTrackingHook(BaseHook):
    """
    Base class of the tracking hooks: what the five APIs share.

    :param conn_id: the Airflow connection (default ``<conn type>_default``).
    :param requests_per_minute: override the quota from the connection's ``plan``.
    :param max_concurrency: requests in flight at once (default from the quota and the
        API's typical answer time).
    :param timeout: seconds for each HTTP call (default 30).
    :param quota_share: optional cap on this process: the fraction of the key's minute quota it may
        use. Not needed to share a key: every process using the key books its requests in the
        key's quota ledger (``docs/quota.md``), which keeps them together under the quota.
    :param requests_per_day: the key's day budget (UTC day); wins over the plan's and the extra.
    :param requests_per_month: the key's month budget (UTC month); wins over the plan's and the extra.
    :param quota_store: a ``redis``, ``postgres`` or ``sqlite`` connection holding the ledger
        (default: the extra ``quota_store``, else ``$AIRFLOW_HOME/parcels_quota.db``).
    :param max_retries: retries of one call after 429, 5xx, timeouts and bad JSON.
    :param progress_interval: seconds between progress lines in the log on long runs.
    """

    conn_name_attr = "conn_id"
    default_conn_name: ClassVar[str]
    conn_type: ClassVar[str]
    hook_name: ClassVar[str]
    #: Short name of the API, the ``provider`` column of every result.
    provider: ClassVar[str]
    default_base_url: ClassVar[str]
    plans: ClassVar[Mapping[str, Plan]] = {}
    default_plan: ClassVar[str | None] = None
    #: Most parcels one tracking call may carry when no plan says otherwise.
    max_batch_size: ClassVar[int] = 1
    #: Typical answer time of one tracking call, to size concurrency to the quota.
    seconds_per_request: ClassVar[float] = 1.0
    #: Whether a batch costs one quota unit per parcel (TrackFlow) rather than one per call.
    quota_counts_parcels: ClassVar[bool] = False
    #: Connection fields that must hold a credential: (field, label).
    required_credentials: ClassVar[tuple[tuple[str, str], ...]] = (("password", "API key"),)
    status_map: ClassVar[StatusMap]

    def __init__(
        self,
        conn_id: str | None = None,
        *,
        requests_per_minute: float | None = None,
        max_concurrency: int | None = None,
        timeout: float | None = None,
        quota_share: float | None = None,
        max_retries: int | None = None,
        progress_interval: float = 10.0,
        requests_per_day: float | None = None,
        requests_per_month: float | None = None,
        quota_store: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.default_conn_name
        self._overrides = {
            "requests_per_minute": requests_per_minute,
            "max_concurrency": max_concurrency,
            "timeout": timeout,
            "quota_share": quota_share,
            "max_retries": max_retries,
            "requests_per_day": requests_per_day,
            "requests_per_month": requests_per_month,
            "quota_store": quota_store,
        }
        self._settings: HookSettings | None = None
        self._login: _Secret | None = None
        self._password: _Secret | None = None
        self._extra: dict[str, Any] = {}
        self._redactor = Redactor()
        self._session: requests.Session | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._verified = False
        self.stats = TrackingStats(progress_interval)
        self._limiter: RateLimiter | None = None
        self._ledger: QuotaLedger | None = None
        self._quota_limits: QuotaLimits | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} conn_id={self.conn_id!r}>"

    # ------------------------------------------------------------------ connection

    def configure(self, conn: Any, extra: Mapping[str, Any]) -> HookSettings:
        """
        Read credentials and settings from an Airflow connection (sync or async fetched).

        :param conn: the ``Connection``.
        :param extra: its extras as a dict.
        :raises ParcelConnectionError: missing credential or a bad extra, naming the field.
        """
        if not isinstance(extra, Mapping):
            raise ParcelConnectionError(
                f"connection {self.conn_id!r} ({self.conn_type}): extra must be a JSON object, "
                f"got {type(extra).__name__}"
            )
        for field, label in self.required_credentials:
            if not (getattr(conn, field, None) or "").strip():
                raise ParcelConnectionError(
                    f"connection {self.conn_id!r} ({self.conn_type}) has no {label}: "
                    f"set the connection's {field} field"
                )
        self._login = _Secret((conn.login or "").strip())
        self._password = _Secret((conn.password or "").strip())
        self._extra = dict(extra)
        self._redactor = Redactor.for_connection(self.conn_type, conn.login, conn.password, self._extra, conn.host)
        with self.redacting():
            base_url = build_base_url(
                self.conn_id, self.default_base_url, conn.host, conn.port, conn.schema, self._extra.get("scheme")
            )
        self._settings = resolve_settings(
            conn_id=self.conn_id,
            conn_type=self.conn_type,
            extra=self._extra,
            overrides=self._overrides,
            plans=self.plans,
            default_plan=self.default_plan,
            max_batch_size=self.max_batch_size,
            seconds_per_request=self.seconds_per_request,
            base_url=base_url,
        )
        self._quota_limits = resolve_limits(conn_id=self.conn_id, provider=self.provider, extra=self._extra,
                                            overrides=self._overrides, plans=self.plans,
                                            default_plan=self.default_plan)
        self._ledger = QuotaLedger.for_hook(self.provider, credential_hash(self._login, self._password),
                                            self._quota_limits, quota_store_of(self._extra, self._overrides))
        # The per-process limiter paces only as the optional quota_share cap, or to learn an unknown quota.
        capped = self._settings.requests_per_minute != self._quota_limits.requests_per_minute
        local_rpm = self._settings.requests_per_minute if capped or self._quota_limits.requests_per_minute is None \
            else None
        self._limiter = RateLimiter.for_connection(self.provider, self.conn_id, local_rpm)
        if local_rpm is None and self._limiter.configured:
            self._limiter.requests_per_minute = None  # a cap set by an earlier hook of this connection
        return self._settings

    @property
    def settings(self) -> HookSettings:
        """The resolved settings; reads the connection on first use."""
        if self._settings is None:
            conn = self.get_connection(self.conn_id)
            self.configure(conn, conn.extra_dejson)
        assert self._settings is not None
        return self._settings

    @property
    def limiter(self) -> RateLimiter:
        """The per-process limiter: the ``quota_share`` cap, and the pacing of a quota not known in advance."""
        _ = self.settings
        assert self._limiter is not None
        return self._limiter

    @property
    def ledger(self) -> QuotaLedger:
        """The quota ledger of this API key, shared by every process and machine using the key."""
        _ = self.settings
        assert self._ledger is not None
        return self._ledger

    @property
    def quota_limits(self) -> QuotaLimits:
        """The key's minute quota and day and month budgets (plan, extras, arguments)."""
        _ = self.settings
        assert self._quota_limits is not None
        return self._quota_limits

    def quota_status(self) -> QuotaStatus:
        """
        The key's quota as the ledger sees it: the minute rate, what is used and left of the day
        and the month, and when they reset (the key shown as the API and a hash, never the key).
        """
        return self.ledger.status()

    # ------------------------------------------------------------------ quota (shared by send and asend)

    def _admit(self, request: ApiRequest, reservation: Any, seconds_in_ledger: float) -> float:
        """
        The seconds to wait before sending ``request``, from the ledger's answer; raise when a budget is spent.

        :param request: the call about to be sent.
        :param reservation: the ledger's :class:`~airflow_provider_parcels.quota.Reservation`.
        :param seconds_in_ledger: how long the reservation took (for the stats).
        :raises QuotaExhaustedError: the day or month budget is spent: nothing is sent.
        """
        self.stats.add(ledger_seconds=seconds_in_ledger, quota_wait_seconds=reservation.wait_seconds)
        if reservation.exhausted is not None:
            raise self.quota_exhausted(reservation.exhausted)
        return reservation.wait_seconds

    def quota_exhausted(self, exhausted: QuotaExhausted) -> QuotaExhaustedError:
        """
        The error (error rows with code ``quota_exhausted``) for a spent budget.

        :param exhausted: the ledger's answer.
        """
        return QuotaExhaustedError(self.redact(exhausted.message), exhausted.period, exhausted.resets_at)

    def _reserve(self, request: ApiRequest) -> float:
        """Book ``request`` in the ledger (after the local cap's wait); the seconds to wait then."""
        local = self.limiter.reserve(request.cost)
        if local > 0:
            time.sleep(local)
        started = time.perf_counter()
        reservation = self.ledger.reserve(request.cost)
        return self._admit(request, reservation, time.perf_counter() - started)

    async def _areserve(self, request: ApiRequest) -> float:
        """:meth:`_reserve` for the event loop (the store call runs beside it)."""
        local = self.limiter.reserve(request.cost)
        if local > 0:
            await asyncio.sleep(local)
        started = time.perf_counter()
        reservation = await self.ledger.reserve_async(request.cost)
        return self._admit(request, reservation, time.perf_counter() - started)

    def budget_spent(self, period: str | None, reset_in: float | None, why: str, cost: float = 1.0) -> None:
        """
        The API says a day or month budget is spent (TrackingMore meta.code 4021, a 429 whose
        reset is hours away): tell every process through the ledger, then raise.

        :param period: ``day`` or ``month``, or ``None`` to guess it from ``reset_in``.
        :param reset_in: seconds until the budget resets, as the API says, or ``None`` (the UTC calendar period).
        :param why: what the API answered, for the message.
        :param cost: the units of the refused call.
        :raises QuotaExhaustedError: always.
        """
        if reset_in is not None and not (0 < reset_in <= LONGEST_RESET_SECONDS):
            reset_in = None
        if period is None:
            limits = self.quota_limits
            if limits.requests_per_month and not limits.requests_per_day:
                period = "month"
            elif limits.requests_per_day and not limits.requests_per_month:
                period = "day"
            else:
                period = "day" if reset_in is None or reset_in <= DAY_COUNTER_SECONDS else "month"
        self.ledger.lower_remaining(period, 0, None if reset_in is None else time.time() + reset_in)
        status = self.ledger.status()
        spent = status.day if period == "day" else status.month
        raise QuotaExhaustedError(self.redact(
            f"{self.provider} {'daily' if period == 'day' else 'monthly'} quota is exhausted ({why}; "
            f"{spent.used:g} used by this key here); it resets at {spent.resets_at.isoformat(timespec='seconds')}"
        ), period, spent.resets_at)

    @classmethod
    async def for_trigger(cls, conn_id: str | None = None, **kwargs: Any) -> ParcelTrackingHook:
        """A hook configured on an event loop (the triggerer), without blocking it."""
        from airflow.providers.common.compat.connection import get_async_connection

        hook = cls(conn_id, **kwargs)
        # one argument: the hook= parameter came with common-compat 1.20 (the last for Python 3.10)
        conn = await get_async_connection(hook.conn_id)
        extra = await _async_extra_dejson(conn)
        # beside the loop: opening the quota ledger's store may read its connection and connect
        await asyncio.to_thread(hook.configure, conn, extra)
        return hook

    def auth_headers(self) -> dict[str, str]:
        """The API's auth header(s), exactly as its documentation writes them."""
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        return {"User-Agent": USER_AGENT, "Accept": "application/json", **self.auth_headers()}

    def url(self, path: str) -> str:
        return f"{self.settings.base_url}{path}"

    def redact(self, text: str) -> str:
        """
        ``text`` with the connection's secrets (any case) and URL userinfo replaced by ``***``.

        :param text: a message about to leave the hook.
        """
        return self._redactor(text)

    def redact_value(self, value: Any) -> Any:
        """
        ``value`` (a create result, an XCom dict, an answer) with every string in it redacted.

        :param value: strings, mappings, lists, tuples and dataclasses, nested.
        """
        return self._redactor.value(value)

    @contextlib.contextmanager
    def redacting(self) -> Iterator[None]:
        """Redact, in place, the message of any exception leaving the block (type and traceback kept)."""
        try:
            yield
        except Exception as err:
            self._redactor.exception(err)
            raise

    # ------------------------------------------------------------------ per-API pieces

    def build_batch_request(self, parcels: Sequence[Parcel]) -> ApiRequest:
        """The tracking call for one batch (at most ``settings.batch_size`` parcels)."""
        raise NotImplementedError

    def parse_track_response(self, request: ApiRequest, body: Any) -> list[TrackingResult]:
        """Results for the parcels of ``request`` found in a successful answer."""
        raise NotImplementedError

    def check_answer(self, request: ApiRequest, response: ApiResponse, body: Any) -> None:
        """Raise for an error the API hides in a successful answer (default: none)."""

    def error_message(self, body: Any) -> str | None:
        """The API's human error message in an error body, if it has one."""
        if isinstance(body, Mapping):
            error = body.get("error")
            if isinstance(error, Mapping):
                return str(error.get("message") or error.get("code") or "") or None
            for key in ("message", "detail"):
                if body.get(key):
                    return str(body[key])
        return None

    def build_track_requests(self, parcels: Sequence[Parcel]) -> Iterator[ApiRequest]:
        """Batches as large as the API and plan allow, never larger."""
        size = self.settings.batch_size
        for start in range(0, len(parcels), size):
            yield self.build_batch_request(parcels[start : start + size])

    def result(self, parcel: Parcel, **fields: Any) -> TrackingResult:
        """A result for ``parcel`` from this API."""
        return TrackingResult(
            provider=self.provider,
            carrier=parcel.carrier,
            tracking_number=parcel.tracking_number,
            client_id=parcel.client_id,
            **fields,
        )

    def failure(self, parcel: Parcel, code: str, message: str, raw: Any = None) -> TrackingResult:
        status = ParcelStatus.NOT_FOUND if code == "not_found" else ParcelStatus.UNKNOWN
        return TrackingResult.failure(self.provider, parcel, code, self.redact(message), status,
                                      self.redact_value(raw) if raw else raw)

    # ------------------------------------------------------------------ reading answers (pure)

    def interpret(self, request: ApiRequest, response: ApiResponse) -> list[TrackingResult]:
        """
        Turn one HTTP answer into one result per parcel of the request, or raise:
        ``ParcelApiAuthError`` (401/403), ``RetryableApiError`` (429, 5xx, bad JSON, an answer of
        unexpected shape, quota envelopes), ``RequestRejected`` (400/404 and other client errors)
        or ``UnusableAnswer`` (anything else that breaks the reading of this answer, e.g. a
        ``RecursionError`` or an ``OverflowError``: error rows for this request's parcels only,
        never an exception out of ``track()``).
        """
        try:
            return self._read_answer(request, response)
        except (ParcelApiAuthError, RetryableApiError, RequestRejected, MemoryError):
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise RetryableApiError(
                "malformed_response", f"{self.hook_name} sent an answer of unexpected shape ({_describe(err)})"
            ) from None
        except Exception as err:
            raise UnusableAnswer(
                "malformed_response", f"{self.hook_name} sent an answer that could not be read ({_describe(err)})"
            ) from None

    def _read_answer(self, request: ApiRequest, response: ApiResponse) -> list[TrackingResult]:
        self.observe_rate_headers(response, request.cost)
        status = response.status_code
        if status in (401, 403):
            raise ParcelApiAuthError(self.auth_failure_message(response))
        if status == 429:
            raise self.rate_limited(response)
        if status >= 500:
            raise RetryableApiError("server_error", f"{self.hook_name} answered HTTP {status}",
                                    wait_from_headers(response))
        body = response.json()
        self.check_answer(request, response, body)
        if status >= 400:
            code = "not_found" if status == 404 else "bad_request"
            message = self.error_message(body) or f"HTTP {status}"
            raise RequestRejected(status, code, f"{self.hook_name} answered HTTP {status}: {message}")
        return self.complete(request, self.parse_track_response(request, body))

    def read_item(self, parcel: Parcel, read: Callable[..., TrackingResult], *args: Any) -> TrackingResult:
        """
        ``read(*args)``, the result of one parcel's entry in an answer that answers per item; an
        entry that cannot be read (a value of the wrong type, a ``RecursionError``, an
        ``OverflowError``...) costs only this parcel, as a ``malformed_response`` error row,
        never the other parcels of the answer.

        :param parcel: the parcel the entry answers for.
        :param read: the API module's reader of one entry.
        :param args: its arguments.
        """
        try:
            return read(*args)
        except MemoryError:
            raise
        except Exception as err:
            return self.failure(
                parcel, "malformed_response",
                f"{self.hook_name} sent an entry for this parcel that could not be read ({_describe(err)})",
            )

    def complete(self, request: ApiRequest, results: Iterable[TrackingResult]) -> list[TrackingResult]:
        """Exactly one result per parcel of the request: a parcel the answer skipped is an error."""
        by_key = {self.answer_key(r): r for r in results}
        return [
            by_key.get(self.answer_key(p))
            or self.failure(p, "missing_from_answer", f"{self.hook_name} did not answer for this parcel")
            for p in request.parcels
        ]

    def auth_failure_message(self, response: ApiResponse) -> str:
        detail = ""
        with contextlib.suppress(RetryableApiError):
            detail = self.error_message(response.json()) or ""
        detail = f": {detail}" if detail else ""
        return self.redact(
            f"{self.hook_name} refused the credentials of connection {self.conn_id!r} "
            f"(HTTP {response.status_code}{detail}); check the key in the connection"
        )

    def rate_limited(self, response: ApiResponse, reason: str = "rate limit") -> RetryableApiError:
        """
        The error for a refusal on quota. Holds the whole connection back for the asked wait,
        and, when the quota is unknown, learns it from ``X-RateLimit-Limit`` and that wait.
        """
        wait = wait_from_headers(response)
        self.stats.add(rate_limited=1)
        if wait is not None and FOLLOWED_WINDOW_SECONDS < wait <= LONGEST_RESET_SECONDS:
            # a reset hours away: a day or month budget is spent, not the minute's; never retried
            self.budget_spent(None, wait, f"{self.hook_name} refused the request ({reason}), "
                                          f"its quota resets in {wait / 3600:.1f} h")
        if wait is not None:
            clamped = min(wait, self.settings.retry.max_wait, MAX_WAIT_SECONDS)
            self.ledger.pause(clamped)  # every process using the key waits, not only this one
            self.limiter.pause(clamped)
            if self.quota_limits.requests_per_minute is None:
                self.limiter.learn_from_refusal(announced_limit(response), wait)
        message = self.redact(f"{self.hook_name} refused the request: {reason}")
        return RetryableApiError("rate_limited", message, wait)

    def observe_rate_headers(self, response: ApiResponse, cost: float = 1.0) -> None:
        """Follow the API's own count of its window: spread what is left, or wait for the reset."""
        remaining = remaining_quota(response)
        if remaining is None or response.status_code == 429:
            return
        self.limiter.note_remaining(remaining, cost)
        reset_in = wait_from_headers(response)
        if reset_in is None or reset_in <= 0:
            return
        if reset_in <= FOLLOWED_WINDOW_SECONDS:
            # a per-minute style window: the ledger paces a known quota; an unknown one is followed here
            if self.quota_limits.requests_per_minute is None and not self.limiter.configured:
                self.limiter.follow_window(remaining - self.stats.in_flight, reset_in)
        elif reset_in <= LONGEST_RESET_SECONDS:
            # a day or month counter: less may be left than the ledger thinks (another tool on the key)
            period = "day" if reset_in <= DAY_COUNTER_SECONDS else "month"
            self.ledger.lower_remaining(period, remaining, time.time() + reset_in)

    # ------------------------------------------------------------------ public API

    def track(
        self,
        parcels: Iterable[Parcel | Mapping[str, Any]] | pd.DataFrame,
        *,
        as_dataframe: bool = False,
        chunk_size: int = 10_000,
    ) -> list[TrackingResult] | pd.DataFrame:
        """
        Track parcels: one ``TrackingResult`` per parcel handed in, in input order.

        :param parcels: ``Parcel`` objects, dicts with ``carrier`` and ``tracking_number``
            (optional ``client_id``, ``postal_code``, ``phone_number``), or a DataFrame.
        :param as_dataframe: return a pandas DataFrame (one row per result) instead.
        :param chunk_size: parcels planned together (de-duplicated, batched, in flight).
        :raises ParcelApiAuthError: the API refused the key (the whole call fails).
        """
        results = list(self.iter_track(parcels, chunk_size=chunk_size))
        if as_dataframe:
            return results_to_dataframe(results)
        return results

    def iter_track(
        self, parcels: Iterable[Parcel | Mapping[str, Any]] | pd.DataFrame, *, chunk_size: int = 1000
    ) -> Iterator[TrackingResult]:
        """
        Like :meth:`track`, but yields results chunk by chunk so memory stays flat.

        :param parcels: any iterable (a generator, a cursor) of parcels, or a DataFrame.
        :param chunk_size: parcels per chunk.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        items = _rows(parcels)
        total = len(parcels) if hasattr(parcels, "__len__") else None
        self.stats.reset(total)
        index = 0
        ahead: _ChunkInFlight | None = None
        following: _ChunkInFlight | None = None
        try:
            while True:
                # The next chunk is sent before this one is collected, so no chunk boundary
                # leaves the quota idle while the last answers of a chunk come in.
                chunk = list(islice(items, chunk_size))
                following = self._submit_chunk(chunk, index) if chunk else None
                index += len(chunk)
                if ahead is not None:
                    yield from self._collect(ahead)
                    self.stats.maybe_log(self.log, self.hook_name)
                if following is None:
                    break
                ahead, following = following, None
        finally:
            for flight in (ahead, following):
                if flight is not None:
                    flight.cancel()
            if self.stats.requests:
                self.stats.maybe_log(self.log, self.hook_name, force=True)

    def track_chunk(self, chunk: Sequence[Any], first_index: int = 0) -> list[TrackingResult]:
        """Track one chunk on this hook's pool; results in input order."""
        return self._collect(self._submit_chunk(chunk, first_index))

    def after_chunk(self, results: list[TrackingResult]) -> list[TrackingResult]:
        """A chunk's results before they are handed out (TrackingMore registers missing numbers)."""
        return results

    async def atrack(self, parcels: Sequence[Parcel | Mapping[str, Any]]) -> list[TrackingResult]:
        """The async twin of :meth:`track` for the triggerer: same batching, parsing and quota."""
        unique, slots, invalid = self.plan_chunk(list(parcels), 0)
        answers = await self._arun(list(self.build_track_requests(unique)))
        return self.assemble(slots, invalid, answers)

    # ------------------------------------------------------------------ planning (pure)

    def plan_chunk(
        self, chunk: Sequence[Any], first_index: int
    ) -> tuple[list[Parcel], list[tuple[Parcel | None, int]], dict[int, TrackingResult]]:
        """Validate and de-duplicate a chunk: unique parcels to ask for, and where each answer goes."""
        unique: dict[_Key, Parcel] = {}
        slots: list[tuple[Parcel | None, int]] = []
        invalid: dict[int, TrackingResult] = {}
        for offset, item in enumerate(chunk):
            position = first_index + offset
            try:
                parcel = Parcel.coerce(item, index=position)
                self.validate_parcel(parcel, position)
            except InvalidParcelError as err:
                invalid[offset] = self.invalid_result(item, str(err))
                slots.append((None, offset))
                continue
            unique.setdefault(self.answer_key(parcel), parcel)
            slots.append((parcel, offset))
        return list(unique.values()), slots, invalid

    def validate_parcel(self, parcel: Parcel, index: int | None = None) -> None:
        """
        Refuse a parcel this API cannot be asked about (beyond the checks of ``Parcel``), so it
        becomes an ``invalid_input`` error row and is never sent. Default: none.

        :param parcel: the parcel.
        :param index: its position in the input, for the message.
        :raises InvalidParcelError: naming the parcel and the field.
        """

    def answer_key(self, item: Parcel | TrackingResult) -> _Key:
        """
        What one question to the API is: parcels with the same key are asked once and share
        the answer. Default: carrier and tracking number, case-folded (the APIs ignore case).

        :param item: a parcel handed in, or a result built for one.
        """
        return _fold((item.carrier, item.tracking_number))

    def invalid_result(self, item: Any, message: str) -> TrackingResult:
        """
        The error row of an input that is not a valid parcel: nothing handed in is dropped, and
        nothing handed in is altered. ``carrier`` and ``tracking_number`` are the input's own
        strings, whatever their length; the input itself is kept in ``raw["input"]``. An input
        with no usable tracking number (missing, ``None``, empty, not a string) gets
        :func:`invalid_input_key`, a key derived from the whole input, so each bad input has its
        own row key and the same input always gets the same one.

        :param item: the input as handed in.
        :param message: why it is not a parcel.
        """
        get = item.get if isinstance(item, Mapping) else (lambda _k, _d=None: None)
        number = get("tracking_number")
        carrier = get("carrier")
        if isinstance(number, str) and number.strip():
            key = number
        elif isinstance(number, int) and not isinstance(number, bool):
            key = str(number)
        else:
            key = invalid_input_key(item)
        return TrackingResult(
            provider=self.provider,
            carrier=carrier if isinstance(carrier, str) else ("" if carrier is None else str(carrier)),
            tracking_number=key,
            error=TrackingError("invalid_input", message),
            raw={"input": _json_safe(item)},
        )

    def assemble(
        self,
        slots: list[tuple[Parcel | None, int]],
        invalid: dict[int, TrackingResult],
        answers: Mapping[_Key, TrackingResult],
    ) -> list[TrackingResult]:
        """
        Results in input order: each parcel gets the answer to its question (``answer_key``),
        carrying the parcel's own carrier, number and client id as handed in.

        :param slots: per input, the parcel (``None`` for an invalid input) and its offset.
        :param invalid: the error rows of invalid inputs, by offset.
        :param answers: results by ``answer_key``.
        """
        out = []
        for parcel, offset in slots:
            if parcel is None:
                out.append(invalid[offset])
                continue
            answer = answers[self.answer_key(parcel)]
            if (answer.carrier, answer.tracking_number, answer.client_id) != (
                parcel.carrier, parcel.tracking_number, parcel.client_id
            ):
                answer = dataclasses.replace(answer, carrier=parcel.carrier, tracking_number=parcel.tracking_number,
                                             client_id=parcel.client_id)
            out.append(answer)
        return out

    def final_failures(self, request: ApiRequest, error: Exception) -> list[TrackingResult]:
        """Error results for every parcel of a request that could not be answered."""
        if isinstance(error, UnusableAnswer):  # never retried: the same answer would come back
            return [self.failure(p, error.code, error.message) for p in request.parcels]
        if isinstance(error, RetryableApiError):
            return [self.failure(p, error.code, f"{error.message} (after retries)") for p in request.parcels]
        assert isinstance(error, RequestRejected)
        return [self.failure(p, error.code, error.message) for p in request.parcels]

    def split(self, request: ApiRequest) -> list[ApiRequest]:
        """A rejected batch, one request per parcel, so the bad parcel is found and the rest tracked."""
        return [self.build_batch_request([p]) for p in request.parcels]

    def _note_done(self, request: ApiRequest) -> None:
        self.stats.add(parcels_done=len(request.parcels))
        self.stats.maybe_log(self.log, self.hook_name)

    def _on_retry(self, state: RetryCallState) -> None:
        self.stats.add(retries=1)
        error = state.outcome.exception() if state.outcome else None
        self.log.debug("%s: retry %d after %s", self.hook_name, state.attempt_number, self.redact(str(error)))

    # ------------------------------------------------------------------ sync transport

    def get_conn(self) -> requests.Session:
        """The hook's one ``requests.Session``, pooled for ``max_concurrency`` connections."""
        if self._session is None:
            session = requests.Session()
            adapter = DeadlineAdapter(pool_connections=2, pool_maxsize=self.settings.max_concurrency, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update(self.headers())
            self._session = session
        return self._session

    def send(self, request: ApiRequest) -> ApiResponse:
        """
        One HTTP attempt: waits for the quota, sends, and wraps the answer. The call (connect,
        headers and body) ends within ``timeout`` seconds however slowly the server answers,
        and an answer larger than ``max_response_bytes`` is refused without being read whole.

        :raises RetryableApiError: ``timeout`` or ``connection_error``.
        :raises UnusableAnswer: ``response_too_large``.
        """
        wait = self._reserve(request)
        if wait > 0:
            time.sleep(wait)
        settings = self.settings
        session = self.get_conn()
        self.stats.add(requests=1, in_flight=request.cost)
        self.limiter.record(request.cost)
        try:
            with Deadline(settings.timeout) as deadline:
                try:
                    # the socket timeouts bound each read; the deadline (a watchdog) bounds them all
                    with session.request(request.method, self.url(request.path), params=request.params,
                                         json=request.json, timeout=settings.timeout, stream=True) as response:
                        body = BodyReader(settings.max_response_bytes, response.headers.get("Content-Length"))
                        for chunk in response.iter_content(READ_CHUNK_BYTES):
                            body.add(chunk)
                except OSError as err:  # requests.RequestException included
                    if deadline.expired or isinstance(err, requests.Timeout):
                        raise self.unreachable("timeout") from None
                    raise self.unreachable("connection_error", err) from None
                if deadline.fired:  # the watchdog ended a body that had no announced length
                    raise self.unreachable("timeout")
        finally:
            self.stats.add(in_flight=-request.cost)
        return ApiResponse(response.status_code, response.headers, body.content())

    def unreachable(self, code: str, error: Exception | None = None) -> RetryableApiError:
        """
        The retryable error of a call that got no answer, naming the host and why: refused, DNS,
        TLS, reset or timeout (the URL's userinfo and the connection's secrets redacted).

        :param code: ``timeout`` or ``connection_error``.
        :param error: what the HTTP client raised.
        """
        from airflow_provider_parcels.hooks.no_answer import endpoint, no_answer_reason

        base_url = self.redact(self.settings.base_url)
        if code == "timeout":
            host, port = endpoint(base_url)
            reason = f"no answer from {host}{f':{port}' if port else ''} within {self.settings.timeout} s (timeout)"
        else:
            reason = no_answer_reason(error, base_url)
        return RetryableApiError(code, self.redact(f"{self.hook_name} at {base_url}: {reason}"))

    def call(self, request: ApiRequest) -> ApiResponse:
        """Send a non-tracking call with the retry policy (429, 5xx, no answer); return the answer."""
        with self.redacting():
            for attempt in Retrying(**self.settings.retry.tenacity_kwargs(self._on_retry)):
                with attempt:
                    response = self.send(request)
                    self.raise_for_retry(response)
                    return response
        raise AssertionError("unreachable")

    def raise_for_retry(self, response: ApiResponse) -> None:
        """Raise what ``interpret`` would for auth, quota and server errors (non-tracking calls)."""
        self.observe_rate_headers(response)
        if response.status_code in (401, 403):
            raise ParcelApiAuthError(self.auth_failure_message(response))
        if response.status_code == 429:
            raise self.rate_limited(response)
        if response.status_code >= 500:
            raise RetryableApiError("server_error", f"{self.hook_name} answered HTTP {response.status_code}",
                                    wait_from_headers(response))

    def execute_request(self, request: ApiRequest) -> list[TrackingResult]:
        """One tracking call with retries; always one result per parcel, unless auth fails."""
        try:
            for attempt in Retrying(**self.settings.retry.tenacity_kwargs(self._on_retry)):
                with attempt:
                    results = self.interpret(request, self.send(request))
        except (RetryableApiError, RequestRejected) as err:
            if isinstance(err, RequestRejected) and len(request.parcels) > 1 and err.status_code != 404:
                return [r for sub in self.split(request) for r in self.execute_request(sub)]
            results = self.final_failures(request, err)
        self._note_done(request)
        return results

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.settings.max_concurrency, thread_name_prefix=self.provider)
        return self._executor

    def _submit_chunk(self, chunk: Sequence[Any], first_index: int) -> _ChunkInFlight:
        unique, slots, invalid = self.plan_chunk(chunk, first_index)
        pending = list(self.build_track_requests(unique))
        flight = _ChunkInFlight(slots, invalid, key=self.answer_key)
        if pending and not self._verified:
            # The first call goes alone: a wrong key is then sent once, not max_concurrency times.
            flight.add(self.execute_request(pending.pop(0)))
            self._verified = True
        flight.futures = [self.executor.submit(self.execute_request, r) for r in pending]
        return flight

    def _collect(self, flight: _ChunkInFlight, finish: bool = True) -> list[TrackingResult]:
        try:
            for future in flight.futures:
                flight.add(future.result())
        except BaseException:
            flight.cancel()
            raise
        results = self.assemble(flight.slots, flight.invalid, flight.answers)
        return self.after_chunk(results) if finish else results

    def close(self) -> None:
        """Release the session and the thread pool."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._session is not None:
            self._session.close()
            self._session = None

    def __del__(self) -> None:
        try:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
        except Exception:
            pass

    # ------------------------------------------------------------------ async transport (trigger)

    async def asend(self, client: httpx.AsyncClient, request: ApiRequest) -> ApiResponse:
        """
        The async twin of :meth:`send`: the same deadline per call (connect, headers and body)
        and the same size cap.

        :param client: the ``httpx.AsyncClient`` of this run.
        :param request: the call.
        """
        wait = await self._areserve(request)
        if wait > 0:
            await asyncio.sleep(wait)
        settings = self.settings
        self.stats.add(requests=1, in_flight=request.cost)
        self.limiter.record(request.cost)
        deadline = async_deadline(settings.timeout)
        try:
            async with deadline, client.stream(request.method, self.url(request.path), params=request.params,
                                               json=request.json) as response:
                body = BodyReader(settings.max_response_bytes, response.headers.get("Content-Length"))
                async for chunk in response.aiter_bytes(READ_CHUNK_BYTES):
                    body.add(chunk)
        except TimeoutError:
            if deadline.expired():
                raise self.unreachable("timeout") from None
            raise
        except httpx.TimeoutException:
            raise self.unreachable("timeout") from None
        except httpx.HTTPError as err:
            raise self.unreachable("connection_error", err) from None
        finally:
            self.stats.add(in_flight=-request.cost)
        return ApiResponse(response.status_code, response.headers, body.content())

    async def aexecute_request(self, client: httpx.AsyncClient, request: ApiRequest) -> list[TrackingResult]:
        try:
            async for attempt in AsyncRetrying(**self.settings.retry.tenacity_kwargs(self._on_retry)):
                with attempt:
                    results = self.interpret(request, await self.asend(client, request))
        except (RetryableApiError, RequestRejected) as err:
            if isinstance(err, RequestRejected) and len(request.parcels) > 1 and err.status_code != 404:
                nested = [await self.aexecute_request(client, sub) for sub in self.split(request)]
                return [r for group in nested for r in group]
            results = self.final_failures(request, err)
        self._note_done(request)
        return results

    async def _arun(self, batch_requests: list[ApiRequest]) -> dict[_Key, TrackingResult]:
        settings = self.settings
        limits = httpx.Limits(max_connections=settings.max_concurrency)
        semaphore = asyncio.Semaphore(settings.max_concurrency)
        groups: list[list[TrackingResult]] = []
        pending = list(batch_requests)

        async def one(client: httpx.AsyncClient, request: ApiRequest) -> list[TrackingResult]:
            async with semaphore:
                return await self.aexecute_request(client, request)

        async with httpx.AsyncClient(headers=self.headers(), timeout=settings.timeout, limits=limits) as client:
            if pending and not self._verified:
                # As on the sync path: the first call goes alone, so a wrong key is sent once.
                groups.append(await self.aexecute_request(client, pending.pop(0)))
                self._verified = True
            tasks = [asyncio.ensure_future(one(client, r)) for r in pending]
            try:
                groups.extend(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        return {self.answer_key(r): r for group in groups for r in group}

    # ------------------------------------------------------------------ UI test button

    test_request: ClassVar[ApiRequest]
    #: Statuses of the test call that prove the key was accepted.
    test_accept: ClassVar[tuple[int, ...]] = (200,)

    def test_connection(self) -> tuple[bool, str]:
        """
        One cheap authenticated call; ``(ok, message)`` for the UI's Test button, the REST API
        (``POST /api/v2/connections/test``) and ``airflow connections test``.

        The message names the API, the URL tested and the connection, except when Airflow tests
        under a random id of its own (the REST endpoint does): then it says "this connection".
        """
        try:
            ok, message = self._test_connection()
        except (ParcelConnectionError, ParcelApiAuthError, RetryableApiError, RequestRejected) as err:
            ok, message = False, str(err)
        if ok:
            message = f"{message}; {self.quota_summary()}"
        if self._testing_under_transient_id():
            message = message.replace(f"connection {self.conn_id!r}", "this connection")
        return ok, self.redact(message)

    def quota_summary(self) -> str:
        """:meth:`quota_status` on one line (for the Test button and the operator's log)."""
        try:
            status = self.quota_status()
        except Exception as err:  # the ledger's store answers for itself; this is a courtesy
            return f"quota: unknown ({_describe(err)})"
        return "quota " + "; ".join(line.strip() for line in status.format().splitlines())

    def _test_connection(self) -> tuple[bool, str]:
        response = self.send(self.test_request)
        if response.status_code in (401, 403):
            return False, self.auth_failure_message(response)
        try:
            self.check_answer(self.test_request, response, response.json())
        except ParcelApiAuthError as err:
            return False, str(err)
        except (RetryableApiError, RequestRejected):
            pass
        where = f"{self.hook_name} at {self.settings.base_url}"
        if response.status_code in self.test_accept:
            return True, f"{where} accepted the credentials of connection {self.conn_id!r}"
        return False, f"{where} answered HTTP {response.status_code} to {self.test_request.path}"

    def _testing_under_transient_id(self) -> bool:
        """
        Whether ``conn_id`` is the throw-away id Airflow's REST test endpoint gives the connection
        it tests (8 random letters and digits, defined only as an ``AIRFLOW_CONN_`` variable).
        """
        import os
        import re

        return bool(re.fullmatch(r"[A-Za-z0-9]{8}", self.conn_id or "")) and (
            f"AIRFLOW_CONN_{self.conn_id.upper()}" in os.environ
        )


@dataclasses.dataclass
class _ChunkInFlight:
    """A chunk whose requests are on the pool: where each answer goes, and the futures."""

    slots: list[tuple[Parcel | None, int]]
    invalid: dict[int, TrackingResult]
    answers: dict[_Key, TrackingResult] = dataclasses.field(default_factory=dict)
    futures: list[Future] = dataclasses.field(default_factory=list)
    #: the hook's ``answer_key``: how an answer is filed.
    key: Callable[[TrackingResult], _Key] = dataclasses.field(
        default=lambda r: _fold((r.carrier, r.tracking_number))
    )

    def add(self, results: Iterable[TrackingResult]) -> None:
        for result in results:
            self.answers[self.key(result)] = result

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()


async def _async_extra_dejson(conn: Any) -> dict[str, Any]:
    """A connection's extras read without blocking the event loop, on any common-compat version."""
    try:
        from airflow.providers.common.compat.connection import get_async_extra_dejson
    except ImportError:  # common-compat < 1.21
        if hasattr(conn, "aextra_dejson"):
            return await conn.aextra_dejson()
        from asgiref.sync import sync_to_async

        return await sync_to_async(lambda: conn.extra_dejson)()
    return await get_async_extra_dejson(conn)


def _describe(error: BaseException) -> str:
    """An exception for a message: its type and the start of its text (a hostile answer may make it huge)."""
    text = str(error)
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def _fold(key: _Key) -> _Key:
    """A parcel key for asking the API: tracking numbers (and carrier codes) ignore case there."""
    return (key[0].lower(), key[1].upper())


#: Prefix of the key of an input without a usable tracking number (never a valid number:
#: those start with a letter or digit).
INVALID_INPUT_PREFIX = "#invalid-input-"


def invalid_input_key(item: Any) -> str:
    """
    The row key of an input with no usable tracking number: ``#invalid-input-`` and 24 hex
    digits of a SHA-256 of the input as canonical JSON. Deterministic (the same input, the same
    key, in every run) and never equal to a valid tracking number.

    :param item: the input as handed in.
    """
    text = json.dumps(_json_safe(item), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return INVALID_INPUT_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _json_safe(item: Any) -> Any:
    """The input as plain JSON values (what is not JSON is written as its ``repr``)."""
    try:
        return json.loads(json.dumps(item, default=repr, allow_nan=False))
    except (TypeError, ValueError):
        if isinstance(item, Mapping):
            return {str(k): _json_safe(v) for k, v in item.items()}
        return repr(item)


def _rows(parcels: Any) -> Iterator[Any]:
    if hasattr(parcels, "to_dict") and hasattr(parcels, "columns"):
        missing = {"carrier", "tracking_number"} - set(parcels.columns)
        if missing:
            raise InvalidParcelError(f"the DataFrame has no column(s) {', '.join(sorted(missing))}")
        return (
            {k: (None if _is_missing(v) else v) for k, v in row.items()}
            for row in parcels.to_dict(orient="records")
        )
    if isinstance(parcels, (str, bytes, Mapping)):
        raise InvalidParcelError(
            f"parcels must be an iterable of parcels, got a single {type(parcels).__name__}"
        )
    return iter(parcels)


def _is_missing(value: Any) -> bool:
    try:
        return value != value  # NaN
    except Exception:
        return False


def results_to_dataframe(results: Iterable[TrackingResult]) -> pd.DataFrame:
    """One row per result: the compact fields plus ``error_code``, ``error_message``, ``event_count``."""
    import pandas as pd

    rows = []
    for r in results:
        row = r.to_dict(include_raw=False, include_events=False)
        error = row.pop("error")
        row["error_code"] = error["code"] if error else None
        row["error_message"] = error["message"] if error else None
        row["event_count"] = len(r.events)
        rows.append(row)
    return pd.DataFrame(rows)
