"""Helpers the API modules use to read answers: times, status words, event lists."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import pendulum

from airflow_provider_parcels.hooks.transport import clean_text
from airflow_provider_parcels.models import ParcelStatus, TrackingEvent

log = logging.getLogger(__name__)
#: Longer "times" are not handed to the parser (no real timestamp is this long).
MAX_TIME_TEXT = 64


def parse_time(value: Any) -> tuple[datetime | None, str | None]:
    """
    Read an API timestamp.

    :param value: what the API sent (usually text; anything is accepted).
    :return: ``(utc, as_written)``: ``utc`` is the instant in UTC when the text carries a zone
        or offset, and ``None`` for a zone-less local time (never guessed as UTC);
        ``as_written`` is the text unchanged. A time that cannot be read or placed in UTC
        (``"99999999999999999999"``, a year past 9999) is kept as written with no UTC instant:
        it never fails the parcel.
    """
    if value is None or value == "":
        return None, None
    text = clean_text(str(value).strip())
    if len(text) > MAX_TIME_TEXT:
        return None, text
    try:
        parsed = pendulum.parse(text, tz=None, strict=False)
        if not isinstance(parsed, datetime) or parsed.tzinfo is None:
            return None, text
        return datetime.fromtimestamp(parsed.timestamp(), tz=timezone.utc), text
    except MemoryError:
        raise
    except Exception:  # ParserError, ValueError, OverflowError (year 10000, 20-digit "timestamps"), OSError...
        return None, text


def parse_utc(value: Any) -> datetime | None:
    """The UTC instant of a zoned timestamp; a date alone counts as midnight UTC."""
    utc, text = parse_time(value)
    if utc is not None or not text:
        return utc
    if len(text) == 10:
        try:
            return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
        except ValueError:
            return None
    return None


def normalize_word(value: Any) -> str:
    """``"Out for Delivery"`` and ``"out_for_delivery"`` both become ``outfordelivery``."""
    return "".join(ch for ch in str(value).lower() if ch.isalnum())


class StatusMap:
    """
    One API's status vocabulary mapped onto ``ParcelStatus``.

    Keys are compared after :func:`normalize_word`, so spelling and case variants match; a
    value the map does not know becomes ``unknown`` and is logged once per value.

    :param provider: the API name, for the warning.
    :param mapping: provider value -> canonical status.
    """

    def __init__(self, provider: str, mapping: Mapping[str, ParcelStatus]) -> None:
        self.provider = provider
        self._map = {normalize_word(k): v for k, v in mapping.items()}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> ParcelStatus:
        if value is None or str(value).strip() == "":
            return ParcelStatus.UNKNOWN
        status = self._map.get(normalize_word(value))
        if status is None:
            with self._lock:
                first = str(value) not in self._warned
                self._warned.add(str(value))
            if first:
                log.warning("%s: unmapped status value %r recorded as 'unknown'", self.provider, value)
            return ParcelStatus.UNKNOWN
        return status


def make_event(
    *,
    when: Any,
    local: Any = None,
    status: ParcelStatus = ParcelStatus.UNKNOWN,
    provider_status: Any = None,
    description: Any = None,
    location: Any = None,
    raw: Mapping[str, Any] | None = None,
) -> TrackingEvent:
    """
    Build an event. ``when`` is the API's timestamp (zoned or not); ``local``, when the API
    gives a separate local time (ShipEngine ``carrier_occurred_at``), is kept as written.
    """
    utc, written = parse_time(when)
    local_text = text(local) if local not in (None, "") else written
    return TrackingEvent(
        occurred_at=utc,
        occurred_at_local=local_text,
        status=status,
        provider_status=clean_text(str(provider_status)) if provider_status not in (None, "") else None,
        description=text(description),
        location=text(location),
        raw=dict(raw or {}),
    )


def _sort_key(event: TrackingEvent) -> tuple[int, str]:
    if event.occurred_at is not None:
        return (1, event.occurred_at.isoformat())
    # zone-less: order by the local text read as a naive time; never mixed into UTC.
    utc, text = parse_time(f"{event.occurred_at_local}+00:00") if event.occurred_at_local else (None, "")
    return (0, utc.isoformat() if utc else (text or ""))


def dedupe_events(events: Iterable[TrackingEvent]) -> tuple[TrackingEvent, ...]:
    """Drop events with the same content (same ``event_id``); newest first."""
    unique: dict[str, TrackingEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    return tuple(sorted(unique.values(), key=_sort_key, reverse=True))


def first_event_at(events: Iterable[TrackingEvent], status: ParcelStatus) -> datetime | None:
    """The UTC time of the newest event in ``status`` (e.g. when it was delivered)."""
    times = [e.occurred_at for e in events if e.status is status and e.occurred_at is not None]
    return max(times) if times else None


def text(value: Any) -> str | None:
    """A non-empty stripped string any database can store (no NUL, no lone surrogate), or ``None``."""
    if value is None:
        return None
    value = clean_text(str(value).strip())
    return value or None
