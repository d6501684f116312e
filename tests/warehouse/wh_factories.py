"""Tracking results built directly from the model, for the warehouse tests (no HTTP)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone

from airflow_provider_parcels.models import ParcelStatus, TrackingError, TrackingEvent, TrackingResult

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)

#: Text that breaks naive SQL, COPY escaping or encodings.
NASTY = [
    'O\'Brien "quoted"; DROP TABLE parcel_tracking; --',
    "tab\there, newline\nthere, carriage\rreturn, back\\slash \\N",
    "서울 물류센터 도착 📦 — Zürich, Ærø",
    "%s %(name)s ? :1 $1",
    "",
]


def event(
    hours_ago: float,
    description: str = "scan",
    status: ParcelStatus = ParcelStatus.IN_TRANSIT,
    location: str | None = "Hub",
    local: str | None = None,
    zoned: bool = True,
) -> TrackingEvent:
    when = T0 - timedelta(hours=hours_ago)
    return TrackingEvent(
        occurred_at=when if zoned else None,
        occurred_at_local=local or when.strftime("%Y-%m-%d %H:%M"),
        status=status,
        provider_status=status.value,
        description=description,
        location=location,
        raw={"time": local or when.isoformat(), "text": description},
    )


def result(
    i: int,
    *,
    provider: str = "whereparcel",
    carrier: str = "kr.cj",
    status: ParcelStatus = ParcelStatus.IN_TRANSIT,
    fetched_at: datetime = T0,
    events: int | Iterable[TrackingEvent] = 3,
    eta: datetime | None = None,
    error: TrackingError | None = None,
    text: str | None = None,
) -> TrackingResult:
    """Parcel ``i``: ``events`` hourly scans (or the events given), the newest first."""
    if isinstance(events, int):
        events = [event(h, text or f"scan {h} of {i}") for h in range(events)]
    return TrackingResult(
        provider=provider,
        carrier=carrier,
        tracking_number=f"TN{i:07d}",
        status=status,
        provider_status=f"raw-{status.value}",
        status_text=text or status.value.replace("_", " "),
        client_id=f"order-{i}",
        carrier_name="CJ Logistics",
        estimated_delivery=eta,
        origin_country="KR",
        destination_country="DE",
        events=tuple(events),
        error=error,
        fetched_at=fetched_at,
        raw={"i": i, "status": status.value, "text": text},
    )


def batch(n: int, start: int = 0, **kwargs) -> list[TrackingResult]:
    return [result(i, **kwargs) for i in range(start, start + n)]


def mixed(n: int, start: int = 0) -> list[TrackingResult]:
    """``n`` parcels with statuses, texts, errors and zone-less events varying by index."""
    statuses = list(ParcelStatus)
    out = []
    for i in range(start, start + n):
        status = statuses[i % len(statuses)]
        text = NASTY[i % len(NASTY)]
        evs = [event(h, f"{text} #{h}", status) for h in range(i % 4)]
        if i % 5 == 0:
            evs.append(event(50, "zone-less scan", local="2015-10-25 15:01", zoned=False))
        error = TrackingError("not_found", "no such number") if status is ParcelStatus.NOT_FOUND else None
        out.append(
            result(i, status=status, events=evs, error=error, text=text or None, eta=T0 + timedelta(days=(i % 7) - 3))
        )
    return out


def chunked(results: list[TrackingResult], size: int) -> Iterator[list[TrackingResult]]:
    for start in range(0, len(results), size):
        yield results[start : start + size]
