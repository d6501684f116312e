"""
The two warehouse tables, their columns, and the one mapping from ``TrackingResult`` to rows.

Column order here is the order of every ``CREATE TABLE``, ``INSERT``, ``COPY`` and ``dump``;
the tuples built by :func:`build_rows` follow it. Timestamps are turned into database values by
an adapter the dialect passes in (ISO text on SQLite, aware ``datetime`` on PostgreSQL).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from airflow_provider_parcels.models import TrackingResult

log = logging.getLogger(__name__)

TEXT = "text"
INT = "integer"
TS = "timestamp"

#: Turns an aware UTC ``datetime`` (or ``None``) into the value the driver gets.
TsAdapter = Callable[[datetime | None], Any]


@dataclass(frozen=True)
class TableSpec:
    """
    One warehouse table.

    :param name: the table name without prefix or schema.
    :param columns: ``(name, kind)`` pairs in table order; kind is ``text``, ``integer`` or ``timestamp``.
    :param key: the primary key columns.
    :param required: columns declared ``NOT NULL`` besides the key.
    """

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    required: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def non_key(self) -> tuple[str, ...]:
        return tuple(name for name in self.names if name not in self.key)

    @property
    def timestamp_positions(self) -> tuple[int, ...]:
        return tuple(i for i, (_, kind) in enumerate(self.columns) if kind == TS)

    @property
    def integer_positions(self) -> tuple[int, ...]:
        return tuple(i for i, (_, kind) in enumerate(self.columns) if kind == INT)


PARCELS = TableSpec(
    name="parcel_tracking",
    columns=(
        ("provider", TEXT),
        ("carrier", TEXT),
        ("tracking_number", TEXT),
        ("client_id", TEXT),
        ("status", TEXT),
        ("provider_status", TEXT),
        ("status_text", TEXT),
        ("carrier_name", TEXT),
        ("estimated_delivery", TS),
        ("delivered_at", TS),
        ("last_event_at", TS),
        ("last_event_description", TEXT),
        ("last_event_location", TEXT),
        ("event_count", INT),
        ("origin_country", TEXT),
        ("destination_country", TEXT),
        ("error_code", TEXT),
        ("error_message", TEXT),
        ("fetched_at", TS),
        ("raw", TEXT),
        # New since 0.1.0 (issue 16): the latest fetch error, recorded beside the last good state.
        ("last_error_code", TEXT),
        ("last_error_message", TEXT),
        ("last_error_at", TS),
    ),
    key=("provider", "carrier", "tracking_number"),
    required=("status", "event_count", "fetched_at"),
)

#: ``parcel_tracking`` columns holding the error of a later fetch that did not replace the stored state
#: (NULL in every row handed in; the upsert fills them). Every other non-key column is the parcel's
#: state: the last good answer, or the error row of a parcel never answered well.
LAST_ERROR_COLUMNS = ("last_error_code", "last_error_message", "last_error_at")

#: Columns later releases added to tables an earlier release created: added on first use where missing.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {"parcel_tracking": LAST_ERROR_COLUMNS}

EVENTS = TableSpec(
    name="parcel_tracking_events",
    columns=(
        ("provider", TEXT),
        ("carrier", TEXT),
        ("tracking_number", TEXT),
        ("event_id", TEXT),
        ("occurred_at", TS),
        ("occurred_at_local", TEXT),
        ("status", TEXT),
        ("provider_status", TEXT),
        ("description", TEXT),
        ("location", TEXT),
        ("raw", TEXT),
    ),
    key=("provider", "carrier", "tracking_number", "event_id"),
    required=("status",),
)

TABLES = {PARCELS.name: PARCELS, EVENTS.name: EVENTS}

_warned_naive: set[str] = set()


def utc(value: datetime | date | None, field: str = "timestamp") -> datetime | None:
    """
    Normalise a timestamp to an aware UTC ``datetime``.

    A naive value (the model promises aware ones) is read as UTC and logged once per field; a
    bare ``date`` becomes midnight UTC.
    """
    if value is None:
        return None
    if getattr(value, "tzinfo", None) is timezone.utc:  # the common case, and the cheapest
        return value  # type: ignore[return-value]
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if value.tzinfo is None or value.utcoffset() is None:
        if field not in _warned_naive:
            _warned_naive.add(field)
            log.warning("%s without a time zone reached the warehouse; storing it as UTC", field)
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _make_encoder() -> Callable[[Any], str]:
    """
    ``json.dumps(value, sort_keys=True, default=str)``, minus its per-call set-up.

    Reuses one C encoder (about 2.5x faster for small objects) when this Python has the one we
    know and it agrees with ``json.dumps``; else a reused ``JSONEncoder``.
    """
    fallback = json.JSONEncoder(sort_keys=True, default=str).encode
    try:
        from json import encoder

        c_encoder = encoder.c_make_encoder(  # type: ignore[attr-defined]
            None, str, encoder.encode_basestring_ascii, None, ": ", ", ", True, False, True
        )
        sample = {"b": [1, 2.5, None, True], "a": '\u00e9"\n', "c": {"z": datetime(2024, 1, 1)}}
        if "".join(c_encoder(sample, 0)) != json.dumps(sample, sort_keys=True, default=str):
            return fallback
    except Exception:  # no C accelerator, or another signature
        return fallback
    return lambda value: "".join(c_encoder(value, 0))


_encode = _make_encoder()


def _json(value: Any) -> str:
    if not value:
        return "{}"
    return _encode(value if isinstance(value, dict) else dict(value))


def _status(value: Any) -> str:
    return getattr(value, "value", value)


def parcel_row(result: TrackingResult, ts: TsAdapter) -> tuple[Any, ...]:
    """The ``parcel_tracking`` row of ``result``, in :data:`PARCELS` column order."""
    last = result.last_event
    error = result.error
    fetched = ts(utc(result.fetched_at, "fetched_at"))
    return (
        result.provider,
        result.carrier,
        result.tracking_number,
        result.client_id,
        _status(result.status),
        result.provider_status,
        result.status_text,
        result.carrier_name,
        ts(utc(result.estimated_delivery, "estimated_delivery")),
        ts(utc(result.delivered_at, "delivered_at")),
        ts(utc(last.occurred_at, "occurred_at")) if last else None,
        last.description if last else None,
        last.location if last else None,
        len(result.events),
        result.origin_country,
        result.destination_country,
        error.code if error else None,
        error.message if error else None,
        fetched,
        _json(result.raw or {}),
        None,  # last_error_*: written by the upsert only, when a later fetch's error does not
        None,  # replace the stored state (see Dialect.upsert_sql)
        None,
    )


def versions(results: Iterable[TrackingResult]) -> list[list[TrackingResult]]:
    """
    Group a batch by parcel key, each group in the order its versions apply: by ``fetched_at``, and
    on a tie in batch order, as loading the results one by one would apply them.
    """
    groups: dict[tuple[str, str, str], list[TrackingResult]] = {}
    for result in results:
        groups.setdefault(result.key, []).append(result)
    for group in groups.values():
        if len(group) > 1:
            group.sort(key=lambda r: utc(r.fetched_at, "fetched_at"))  # type: ignore[arg-type,return-value]
    return list(groups.values())


def _status_text(status: Any) -> str:
    """A ``ParcelStatus`` (a ``str`` enum) as a plain ``str``, at C speed; other values as they are."""
    return str.__str__(status) if isinstance(status, str) else getattr(status, "value", status)


def build_rows(results: Iterable[TrackingResult], ts: TsAdapter) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """
    Map a batch to ``(parcel rows, event rows)``, plain tuples in table column order.

    Parcel rows: every version of every parcel, each parcel's versions in the order they apply (see
    :func:`versions`; :func:`split_rounds` turns them into key-distinct statements), so that the
    upsert's rules, not this function, decide which version a parcel keeps: loading a batch gives
    the same tables as loading its results one by one. Events are facts, de-duplicated by key, the
    newest version's first.

    This is the hot loop of every load (about ten event rows per parcel): no object beyond the row
    tuple per event, the event id parsing already computed (cached on the event), timestamps the
    model holds in UTC passed on without a function call where the dialect takes ``datetime``
    values, and de-duplication by a dictionary only where a parcel has duplicate event ids or
    several versions in the batch (checked with a C-speed ``set``).
    """
    return rows_of(versions(results), ts)


def rows_of(groups: list[list[TrackingResult]], ts: TsAdapter) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """:func:`build_rows` of parcel groups already made by :func:`versions`."""
    parcels, events, _ = slice_rows(groups, ts)
    return parcels, events


#: The event ids stored per parcel key, as the loader read them before building a slice's rows.
StoredIds = Mapping[tuple[str, str, str], Container[str]]


def slice_rows(
    groups: list[list[TrackingResult]], ts: TsAdapter, stored: StoredIds | None = None
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """
    :func:`rows_of`, leaving out the events already stored: no row is built for them.

    :param groups: parcel groups made by :func:`versions`.
    :param ts: the dialect's timestamp adapter.
    :param stored: per parcel key, the event ids the table holds already (an insert would leave
        them alone: skipping them here only saves building and probing their rows).
    :return: ``(parcel rows, event rows, events skipped as stored)``.
    """
    parcels = [parcel_row(result, ts) for group in groups for result in group]
    identity = _keeps(ts)
    events: list[tuple[Any, ...]] = []
    extend = events.extend
    skipped = 0
    for group in groups:
        known = stored.get(group[0].key) if stored else None
        if len(group) == 1:
            result = group[0]
            evs = result.events
            if not evs:
                continue
            ids = [event.event_id for event in evs]
            if len(set(ids)) != len(ids):  # a hand-made result with duplicates: keep the first of each
                skipped += _dedupe_into(group, ts, events, known)
                continue
            if known:
                kept = [(event, event_id) for event, event_id in zip(evs, ids, strict=True) if event_id not in known]
                skipped += len(evs) - len(kept)
                if not kept:
                    continue
                evs, ids = [event for event, _ in kept], [event_id for _, event_id in kept]
            # Column by column where a C loop does the work (map), then one tuple per event.
            times = [at if at is None or at.tzinfo is timezone.utc else utc(at, "occurred_at")
                     for at in [event.occurred_at for event in evs]]
            if not identity:
                times = list(map(ts, times))
            raws = list(map(_json, [event.raw for event in evs]))
            provider, carrier, number = result.provider, result.carrier, result.tracking_number
            try:
                extend(
                    [
                        (
                            provider,
                            carrier,
                            number,
                            event_id,
                            at,
                            event.occurred_at_local,
                            str.__str__(event.status),  # the ParcelStatus value, at C speed
                            event.provider_status,
                            event.description,
                            event.location,
                            raw,
                        )
                        for event, event_id, at, raw in zip(evs, ids, times, raws, strict=True)
                    ]
                )
            except TypeError:  # a status that is not a str (a hand-made event): the general path
                skipped += _dedupe_into(group, ts, events, known)
        else:
            skipped += _dedupe_into(group, ts, events, known)
    return parcels, events, skipped


def _keeps(ts: TsAdapter) -> bool:
    """Whether ``ts`` hands a ``datetime`` through unchanged (then the loop skips the call)."""
    probe = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return ts(probe) is probe


def _dedupe_into(
    group: list[TrackingResult], ts: TsAdapter, out: list[tuple[Any, ...]], known: Container[str] | None = None
) -> int:
    """
    Append the events of one parcel's versions, de-duplicated by key, the newest version's first,
    leaving out the ids in ``known`` (stored already); return how many were left out that way.
    """
    seen: set[str] = set()
    skipped = 0
    for result in reversed(group):
        head = (result.provider, result.carrier, result.tracking_number)
        for event in result.events:
            event_id = event.event_id
            if event_id in seen:
                continue
            seen.add(event_id)
            if known and event_id in known:
                skipped += 1
                continue
            out.append(
                (
                    *head,
                    event_id,
                    ts(utc(event.occurred_at, "occurred_at")),
                    event.occurred_at_local,
                    _status_text(event.status),
                    event.provider_status,
                    event.description,
                    event.location,
                    _json(event.raw),
                )
            )
    return skipped


def split_rounds(rows: Iterable[tuple[Any, ...]], key_width: int) -> list[list[tuple[Any, ...]]]:
    """
    Split parcel rows (each key's versions in apply order) into rounds with each key at most once:
    round ``i`` holds the ``i``-th version of every key that has one. Usually there is one round.
    """
    rounds: list[list[tuple[Any, ...]]] = []
    seen: dict[tuple[Any, ...], int] = {}
    for row in rows:
        key = row[:key_width]
        n = seen.get(key, 0)
        seen[key] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(row)
    return rounds


NUL = "\x00"


def has_nul(rows: Iterable[tuple[Any, ...]]) -> bool:
    """Whether any text value holds a NUL character (PostgreSQL text cannot)."""
    return any(NUL in value for row in rows for value in row if isinstance(value, str))


def replace_nul(rows: Iterable[tuple[Any, ...]], key_width: int | None) -> list[tuple[Any, ...]]:
    """
    ``rows`` with NUL characters replaced by U+FFFD.

    :param key_width: de-duplicate by the first ``key_width`` values again (the last wins), for
        events; ``None`` keeps every row in order, for parcel versions (:func:`split_rounds` applies
        two keys that became one as versions of one parcel).
    """
    cleaned: list[tuple[Any, ...]] = []
    for row in rows:
        if any(isinstance(value, str) and NUL in value for value in row):
            row = tuple(value.replace(NUL, "\ufffd") if isinstance(value, str) else value for value in row)
        cleaned.append(row)
    if key_width is None:
        return cleaned
    return list({row[:key_width]: row for row in cleaned}.values())
