"""
The ``parcel_subscriptions`` table: which parcels have a live webhook subscription, its vendor id,
and when the last pushed event arrived. It sits beside the warehouse tables (same connection,
``table_prefix`` and ``schema``), so the subscribe operator, the receiver and the hybrid sync all
read one truth.

One row per (``provider``, ``carrier``, ``tracking_number``): ``conn_id``, ``webhook_id``,
``url``, ``events``, ``state`` (``active`` or ``ended``), ``subscribed_at``, ``ended_at``,
``last_event_at`` (when the receiver last committed an event for the parcel), ``last_status``,
``checked_at`` (when the safety-net sync last polled it).
Times are epoch seconds (``DOUBLE PRECISION``), the same on every database.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from airflow_provider_parcels.models import TrackingResult
from airflow_provider_parcels.warehouse import ParcelWarehouse
from airflow_provider_parcels.warehouse.dialects import quote

TABLE = "parcel_subscriptions"
ACTIVE = "active"
ENDED = "ended"
_KEY = ("provider", "carrier", "tracking_number")
_COLUMNS = (*_KEY, "conn_id", "webhook_id", "url", "events", "state", "subscribed_at", "ended_at",
            "last_event_at", "last_status", "checked_at")


@dataclass(frozen=True)
class Subscription:
    """
    One row of ``parcel_subscriptions``.

    :param provider: the API (``trackflow``, ``whereparcel``).
    :param carrier: carrier code.
    :param tracking_number: tracking number.
    :param conn_id: the tracking connection that subscribed it.
    :param webhook_id: the vendor's subscription id.
    :param url: the URL given to the vendor (its token redacted).
    :param events: the events filter, comma-separated.
    :param state: ``active`` or ``ended``.
    :param subscribed_at: epoch seconds.
    :param ended_at: epoch seconds, or None.
    :param last_event_at: epoch seconds of the last event received, or None.
    :param last_status: the canonical status of that event.
    :param checked_at: epoch seconds of the last safety-net poll of the parcel, or None.
    """

    provider: str
    carrier: str
    tracking_number: str
    conn_id: str
    webhook_id: str | None
    url: str | None
    events: str | None
    state: str
    subscribed_at: float | None
    ended_at: float | None
    last_event_at: float | None
    last_status: str | None
    checked_at: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """(provider, carrier, tracking_number)."""
        return self.provider, self.carrier, self.tracking_number


class SubscriptionStore:
    """
    Reads and writes ``parcel_subscriptions`` through a warehouse's connection.

    :param warehouse: the :class:`ParcelWarehouse` whose connection, prefix and schema to use.
    """

    def __init__(self, warehouse: ParcelWarehouse) -> None:
        self.warehouse = warehouse
        self._ready = False

    @property
    def table(self) -> str:
        """The quoted, qualified table name."""
        name = quote(f"{self.warehouse.table_prefix}{TABLE}")
        schema = self.warehouse.schema
        return f"{quote(schema)}.{name}" if schema and self.warehouse.dialect.supports_schema else name

    @property
    def _mark(self) -> str:
        return self.warehouse.dialect.placeholder

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A cursor in one transaction of the warehouse's connection (committed on success)."""
        with self.warehouse.transaction() as (_, cur):
            yield cur

    def ensure_table(self) -> None:
        """Create the warehouse tables and ``parcel_subscriptions`` if missing (once per instance)."""
        if self._ready:
            return
        self.warehouse.ensure_tables()
        number = "DOUBLE PRECISION"
        columns = ", ".join(
            f"{quote(c)} {number if c.endswith('_at') else 'TEXT'}{' NOT NULL' if c in _KEY else ''}"
            for c in _COLUMNS
        )
        key = ", ".join(quote(c) for c in _KEY)
        with self._cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({columns}, PRIMARY KEY ({key}))")
        self._ready = True

    def get(self, provider: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Subscription]:
        """
        The rows of these parcels, by (carrier, tracking_number).

        :param provider: the API.
        :param keys: (carrier, tracking_number) pairs.
        """
        self.ensure_table()
        wanted = {(c, n) for c, n in keys}
        if not wanted:
            return {}
        found: dict[tuple[str, str], Subscription] = {}
        numbers = sorted({n for _, n in wanted})
        cols = ", ".join(quote(c) for c in _COLUMNS)
        with self._cursor() as cur:
            for start in range(0, len(numbers), 500):
                chunk = numbers[start : start + 500]
                marks = ", ".join([self._mark] * len(chunk))
                cur.execute(f"SELECT {cols} FROM {self.table} WHERE {quote('provider')} = {self._mark} "
                            f"AND {quote('tracking_number')} IN ({marks})", [provider, *chunk])
                for row in cur.fetchall():
                    sub = Subscription(*row)
                    if (sub.carrier, sub.tracking_number) in wanted:
                        found[(sub.carrier, sub.tracking_number)] = sub
        return found

    def all(self, provider: str | None = None) -> list[Subscription]:
        """
        Every row (of one API when given).

        :param provider: the API, or None for all.
        """
        self.ensure_table()
        cols = ", ".join(quote(c) for c in _COLUMNS)
        sql, params = f"SELECT {cols} FROM {self.table}", []
        if provider:
            sql, params = sql + f" WHERE {quote('provider')} = {self._mark}", [provider]
        with self._cursor() as cur:
            cur.execute(sql, params)
            return [Subscription(*row) for row in cur.fetchall()]

    def record(self, provider: str, conn_id: str, carrier: str, tracking_number: str, webhook_id: str | None,
               url: str, events: Sequence[str] = (), at: float | None = None) -> None:
        """
        Store a new (or renewed) active subscription.

        :param provider: the API.
        :param conn_id: the tracking connection.
        :param carrier: carrier code.
        :param tracking_number: tracking number.
        :param webhook_id: the vendor's id.
        :param url: the URL given (without secrets).
        :param events: the events filter.
        :param at: epoch seconds of the registration (default now).
        """
        self.ensure_table()
        now = time.time() if at is None else at
        values = (provider, carrier, tracking_number, conn_id, webhook_id, url, ",".join(events), ACTIVE, now,
                  None, None, None, None)
        cols = ", ".join(quote(c) for c in _COLUMNS)
        marks = ", ".join([self._mark] * len(_COLUMNS))
        updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in _COLUMNS if c not in _KEY
                            and c not in ("last_event_at", "last_status", "checked_at"))
        with self._cursor() as cur:
            cur.execute(f"INSERT INTO {self.table} ({cols}) VALUES ({marks}) "
                        f"ON CONFLICT ({', '.join(quote(c) for c in _KEY)}) DO UPDATE SET {updates}", values)

    def checked(self, provider: str, keys: Iterable[tuple[str, str]], at: float | None = None) -> None:
        """
        Note a safety-net poll of these subscribed parcels (the silence clock starts again).

        :param provider: the API.
        :param keys: (carrier, tracking_number) pairs.
        :param at: epoch seconds (default now).
        """
        self.ensure_table()
        at = time.time() if at is None else at
        m = self._mark
        rows = [(at, provider, carrier, number) for carrier, number in keys]
        if not rows:
            return
        with self._cursor() as cur:
            cur.executemany(f"UPDATE {self.table} SET {quote('checked_at')} = {m} WHERE {quote('provider')} = {m} "
                            f"AND {quote('carrier')} = {m} AND {quote('tracking_number')} = {m}", rows)

    def end(self, provider: str, carrier: str, tracking_number: str) -> None:
        """
        Mark a subscription ended (unsubscribed, or the parcel reached a terminal status).

        :param provider: the API.
        :param carrier: carrier code.
        :param tracking_number: tracking number.
        """
        self.ensure_table()
        m = self._mark
        with self._cursor() as cur:
            cur.execute(f"UPDATE {self.table} SET {quote('state')} = {m}, {quote('ended_at')} = {m} "
                        f"WHERE {quote('provider')} = {m} AND {quote('carrier')} = {m} "
                        f"AND {quote('tracking_number')} = {m}", (ENDED, time.time(), provider, carrier,
                                                                   tracking_number))

    def touch(self, results: Sequence[TrackingResult], at: float | None = None) -> int:
        """
        Note that events arrived for these parcels (only parcels with a row are updated).

        :param results: the parsed events.
        :param at: epoch seconds (default now).
        :return: rows updated (as the driver counts them).
        """
        self.ensure_table()
        at = time.time() if at is None else at
        m = self._mark
        rows = [(at, str(r.status), r.provider, r.carrier, r.tracking_number) for r in results]
        if not rows:
            return 0
        with self._cursor() as cur:
            cur.executemany(f"UPDATE {self.table} SET {quote('last_event_at')} = {m}, {quote('last_status')} = {m} "
                            f"WHERE {quote('provider')} = {m} AND {quote('carrier')} = {m} "
                            f"AND {quote('tracking_number')} = {m}", rows)
            return max(cur.rowcount or 0, 0)

    def carrier_of(self, provider: str, tracking_number: str) -> str | None:
        """
        The carrier a parcel was subscribed with (TrackFlow subscribes by number alone, and its push
        may name the carrier differently from the tracking call): the one row's, else None.

        :param provider: the API.
        :param tracking_number: the pushed number.
        """
        self.ensure_table()
        m = self._mark
        with self._cursor() as cur:
            cur.execute(f"SELECT {quote('carrier')} FROM {self.table} WHERE {quote('provider')} = {m} "
                        f"AND {quote('tracking_number')} = {m}", [provider, tracking_number])
            found = {row[0] for row in cur.fetchall()}
        return found.pop() if len(found) == 1 else None

    def parcel_statuses(self, provider: str) -> dict[tuple[str, str], str]:
        """
        The warehouse status of every parcel of one API that has a subscription row.

        :param provider: the API.
        """
        self.ensure_table()
        parcels = self.warehouse.table_name("parcel_tracking")
        m = self._mark
        on = " AND ".join(f"p.{quote(c)} = s.{quote(c)}" for c in _KEY)
        with self._cursor() as cur:
            cur.execute(f"SELECT p.{quote('carrier')}, p.{quote('tracking_number')}, p.{quote('status')} "
                        f"FROM {parcels} p JOIN {self.table} s ON {on} WHERE p.{quote('provider')} = {m}",
                        [provider])
            return {(c, n): s for c, n, s in cur.fetchall()}

    def live(self, provider: str, max_silence_seconds: float | None, now: float | None = None
             ) -> set[tuple[str, str]]:
        """
        Parcels that need no polling: an active subscription whose last event, registration or
        safety-net poll (the latest of them) is at most ``max_silence_seconds`` old.

        :param provider: the API.
        :param max_silence_seconds: the safety net; None trusts an active subscription for ever.
        :param now: epoch seconds (default now).
        """
        now = time.time() if now is None else now
        live: set[tuple[str, str]] = set()
        for sub in self.all(provider):
            if sub.state != ACTIVE:
                continue
            heard = max((t for t in (sub.last_event_at, sub.subscribed_at, sub.checked_at) if t is not None),
                        default=None)
            if max_silence_seconds is None or (heard is not None and now - heard <= max_silence_seconds):
                live.add((sub.carrier, sub.tracking_number))
        return live
