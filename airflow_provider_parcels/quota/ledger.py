"""The quota ledger of one API key, shared by every thread, coroutine, process and machine using it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

from airflow_provider_parcels.quota.limits import QuotaLimits
from airflow_provider_parcels.quota.state import Lower, Op, Pause, Peek, Reserve, StepResult
from airflow_provider_parcels.quota.stores import MemoryStore, QuotaStore, QuotaStoreError, resolve_store

log = logging.getLogger(__name__)

#: Seconds between attempts to reach a shared store again while the process-local fallback is used.
RETRY_STORE_AFTER = 30.0
#: The fallback of every ledger of this process while its store is unreachable.
LOCAL_FALLBACK = MemoryStore("this process (fallback)")


def credential_hash(*secrets: str | None) -> str:
    """
    A short SHA-256 of the credential (16 hex digits): the ledger names keys by it, never by the key.

    :param secrets: the credential's parts, e.g. login and password (``None`` counts as empty).
    """
    joined = "\0".join((s or "").strip() for s in secrets)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def ledger_key(provider: str, cred_hash: str) -> str:
    """
    The ledger key: the API and the credential's hash, e.g. ``trackflow:3f2a...``.

    :param provider: the API's short name.
    :param cred_hash: :func:`credential_hash` of the key.
    """
    return f"{provider}:{cred_hash}"


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


@dataclass(frozen=True)
class QuotaExhausted:
    """
    A day or month budget is spent: nothing is sent until it resets.

    :param key: the ledger key (API and credential hash).
    :param period: ``day`` or ``month``.
    :param limit: the limit in force (configured, or lowered by the API's counters).
    :param used: units used in the period.
    :param requested: the units the refused request needed.
    :param resets_at: when the period resets (UTC).
    """

    key: str
    period: str
    limit: float
    used: float
    requested: float
    resets_at: datetime

    code: ClassVar[str] = "quota_exhausted"

    @property
    def remaining(self) -> float:
        """Units still left (fewer than requested; a smaller request may still fit)."""
        return max(0.0, self.limit - self.used)

    @property
    def message(self) -> str:
        """For the error rows: which quota, and when it resets."""
        provider, period = self.key.split(":", 1)[0], "daily" if self.period == "day" else "monthly"
        return (
            f"{provider} {period} quota of {self.limit:g} requests is exhausted "
            f"({self.used:g} used, {self.remaining:g} left, {self.requested:g} needed); "
            f"it resets at {self.resets_at.isoformat(timespec='seconds')}"
        )


@dataclass(frozen=True)
class Reservation:
    """
    The answer to :meth:`QuotaLedger.reserve`.

    :param wait_seconds: wait this long, then send (the slot is booked).
    :param exhausted: set when a budget is spent: nothing was booked, do not send.
    """

    wait_seconds: float
    exhausted: QuotaExhausted | None = None

    @property
    def ok(self) -> bool:
        """Whether the request may be sent (after ``wait_seconds``)."""
        return self.exhausted is None


@dataclass(frozen=True)
class PeriodStatus:
    """
    One budget of a key.

    :param limit: the limit in force, or ``None`` (no budget known).
    :param used: units used in the current period.
    :param remaining: ``limit - used``, or ``None``.
    :param resets_at: when the period resets.
    """

    limit: float | None
    used: float
    remaining: float | None
    resets_at: datetime


@dataclass(frozen=True)
class QuotaStatus:
    """
    A key's quota as the ledger sees it.

    :param key: API and credential hash.
    :param store: the store's name (``fallback`` when this process is using its local one).
    :param requests_per_minute: the minute quota of the last reservation.
    :param day: the day budget.
    :param month: the month budget.
    :param paused_until: when a shared pause (a 429) ends, if it has not.
    :param booked_ahead: seconds of minute quota already booked ahead of now.
    """

    key: str
    store: str
    requests_per_minute: float | None
    day: PeriodStatus
    month: PeriodStatus
    paused_until: datetime | None
    booked_ahead: float

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        data = asdict(self)
        for name in ("day", "month"):
            data[name]["resets_at"] = data[name]["resets_at"].isoformat(timespec="seconds")
        if self.paused_until is not None:
            data["paused_until"] = self.paused_until.isoformat(timespec="seconds")
        return data

    def format(self) -> str:
        """A few lines for people."""

        def period(name: str, p: PeriodStatus) -> str:
            if p.limit is None:
                return f"  {name}: {p.used:g} used, no limit known; period resets {p.resets_at:%Y-%m-%d %H:%M} UTC"
            return (f"  {name}: {p.used:g} of {p.limit:g} used, {p.remaining:g} left; "
                    f"resets {p.resets_at:%Y-%m-%d %H:%M} UTC")

        rpm = f"{self.requests_per_minute:g}/min" if self.requests_per_minute else "no minute quota"
        lines = [f"{self.key} ({self.store}): {rpm}, {self.booked_ahead:.1f} s booked ahead",
                 period("day", self.day), period("month", self.month)]
        if self.paused_until is not None:
            lines.append(f"  paused until {self.paused_until:%Y-%m-%d %H:%M:%S} UTC (a refusal's Retry-After)")
        return "\n".join(lines)


def status_from(key: str, store: str, result: StepResult) -> QuotaStatus:
    """
    A :class:`QuotaStatus` from a store's answer, with times turned from the store's clock to this one's.

    :param key: the ledger key.
    :param store: the store's name.
    :param result: the answer of a ``Peek`` (or any step).
    """
    s, offset = result.state, time.time() - result.now

    def period(name: str) -> PeriodStatus:
        limit, used = s.limit(name), getattr(s, f"{name}_used")
        return PeriodStatus(limit, used, None if limit is None else max(0.0, limit - used),
                            _utc(getattr(s, f"{name}_end") + offset))

    paused = _utc(s.paused_until + offset) if s.paused_until > result.now else None
    return QuotaStatus(key, store, s.rpm, period("day"), period("month"), paused, max(0.0, s.tat - result.now))


class QuotaLedger:
    """
    The quota of one API key in a store that every process and machine using the key shares.

    ``reserve(cost)`` books the next free slot of the minute quota and counts the day and month
    budgets in one atomic step on the store's clock; it answers how long to wait, or that a
    budget is spent. While the store is unreachable the ledger uses a process-local one (one
    warning), and tries the store again every :data:`RETRY_STORE_AFTER` seconds.

    :param key: :func:`ledger_key` of the API and credential hash.
    :param limits: the key's quotas.
    :param store: where the ledger lives.
    """

    def __init__(self, key: str, limits: QuotaLimits, store: QuotaStore) -> None:
        self.key = key
        self.limits = limits
        self.store = store
        self._lock = threading.Lock()
        self._down_until = 0.0  # monotonic; > now: use the local fallback
        self._warned = False

    # One ledger per store and key in this process, so every hook of the key shares the fallback.
    _registry: ClassVar[dict[tuple[str, str], QuotaLedger]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def for_hook(cls, provider: str, cred_hash: str, limits: QuotaLimits,
                 store: QuotaStore | str | None = None) -> QuotaLedger:
        """
        The process's ledger of an API key; its limits follow the latest hook's settings.

        :param provider: the API's short name (``hook.provider``).
        :param cred_hash: :func:`credential_hash` of the hook's credential.
        :param limits: :func:`~airflow_provider_parcels.quota.limits.resolve_limits` of the connection.
        :param store: a store, or the connection id of the extra ``quota_store``, or ``None``
            for the embedded ``$AIRFLOW_HOME/parcels_quota.db``.
        :raises ParcelConnectionError: ``quota_store`` names no connection, or one of another type.
        """
        if not isinstance(store, QuotaStore):
            try:
                store = resolve_store(store)
            except Exception as exc:  # no such connection, or not a redis/postgres/sqlite one
                from airflow_provider_parcels.hooks.exceptions import ParcelConnectionError

                raise ParcelConnectionError(f"extra 'quota_store' {store!r}: {exc}") from exc
        key = ledger_key(provider, cred_hash)
        with cls._registry_lock:
            ledger = cls._registry.get((store.name, key))
            if ledger is None:
                ledger = cls._registry[(store.name, key)] = cls(key, limits, store)
            else:
                ledger.limits = limits
            return ledger

    # ------------------------------------------------------------------ store access

    @property
    def using_fallback(self) -> bool:
        """Whether the store is unreachable and this process counts on its own."""
        return time.monotonic() < self._down_until

    def _apply(self, op: Op) -> StepResult:
        if time.monotonic() >= self._down_until:
            try:
                result = self.store.apply(self.key, op)
            except QuotaStoreError as exc:
                with self._lock:
                    self._down_until = time.monotonic() + RETRY_STORE_AFTER
                    if not self._warned:
                        self._warned = True
                        log.warning(
                            "Quota store %s is unreachable (%s): %s is paced by this process alone until it is "
                            "back, so other processes using the key may be refused (429)", self.store.name, exc,
                            self.key)
            else:
                if self._warned:
                    with self._lock:
                        if self._warned:
                            self._warned = False
                            log.info("Quota store %s is reachable again for %s", self.store.name, self.key)
                return result
        return LOCAL_FALLBACK.apply(self.key, op)

    # ------------------------------------------------------------------ the calls

    def reserve(self, cost: float = 1.0) -> Reservation:
        """
        Book a slot for a request of ``cost`` units (thread-safe; one store round trip).

        :param cost: units the request costs (a TrackFlow batch: one per parcel).
        :return: how long to wait before sending, or which budget is spent and when it resets.
        """
        limits = self.limits
        result = self._apply(Reserve(cost, limits.interval, limits.requests_per_minute,
                                     limits.requests_per_day, limits.requests_per_month))
        if result.exhausted is None:
            return Reservation(wait_seconds=max(0.0, result.wait))
        s = result.state
        end = getattr(s, f"{result.exhausted}_end")
        return Reservation(0.0, QuotaExhausted(
            key=self.key, period=result.exhausted, limit=s.limit(result.exhausted) or 0.0,
            used=getattr(s, f"{result.exhausted}_used"), requested=cost,
            resets_at=_utc(round(time.time() + end - result.now))))

    async def reserve_async(self, cost: float = 1.0) -> Reservation:
        """
        :meth:`reserve` for coroutines (the store call runs in a thread; the event loop goes on).

        :param cost: units the request costs.
        """
        return await asyncio.to_thread(self.reserve, cost)

    def pause(self, seconds: float) -> None:
        """
        Hold back every request of the key, in every process, for ``seconds`` (a 429's ``Retry-After``).

        :param seconds: how long.
        """
        self._apply(Pause(seconds))

    def lower_remaining(self, period: str, remaining: float, reset_at: datetime | float | None = None) -> None:
        """
        The API says only ``remaining`` units are left of ``period`` (its headers, or a refusal
        saying the budget is spent: ``remaining=0``). The ledger's limit for the period only ever
        goes down; it is forgotten when the period resets.

        :param period: ``day`` or ``month``; or ``minute``, where ``remaining <= 0`` holds every
            process back until ``reset_at``.
        :param remaining: units left.
        :param reset_at: when the period resets: a UTC ``datetime`` or epoch seconds, or ``None``
            (the UTC calendar day or month).
        """
        reset_in = None
        if reset_at is not None:
            epoch = reset_at.timestamp() if isinstance(reset_at, datetime) else float(reset_at)
            reset_in = epoch - time.time()
        self._apply(Lower(period, float(remaining), reset_in))

    def status(self) -> QuotaStatus:
        """The key's minute rate, what is used and left of the day and month, and when they reset."""
        result = self._apply(Peek())
        limits, state = self.limits, result.state  # this process's limits, not the last writer's
        state.rpm, state.day_limit, state.month_limit = (
            limits.requests_per_minute, limits.requests_per_day, limits.requests_per_month)
        return status_from(self.key, "fallback" if self.using_fallback else self.store.name, result)
