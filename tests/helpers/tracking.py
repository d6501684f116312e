"""Shared pieces of the tracking tests: the five APIs, sandbox stats, mixed deterministic parcels."""

from __future__ import annotations

from typing import Any

from airflow_provider_parcels.models import ParcelStatus

APIS = ["whereparcel", "trackingmore", "trackflow", "parcellab", "shipengine"]
CARRIER = {"whereparcel": "kr.cj", "trackingmore": "usps", "trackflow": "ups", "parcellab": "dhl",
           "shipengine": "usps"}

S = ParcelStatus
# What each API can say for the sandbox's deterministic prefixes (docs/sandbox.md).
EXPECTED = {
    "DLV": {None: S.DELIVERED},
    "TRN": {None: S.IN_TRANSIT},
    "OFD": {None: S.OUT_FOR_DELIVERY, "shipengine": S.IN_TRANSIT},
    "EXC": {None: S.EXCEPTION},
    "FAT": {None: S.FAILED_ATTEMPT},
    "PUP": {None: S.AVAILABLE_FOR_PICKUP, "trackingmore": S.IN_TRANSIT},
    "EXP": {None: S.EXCEPTION, "trackingmore": S.EXPIRED, "parcellab": S.EXPIRED},
    "PEN": {None: S.PENDING},
    "INF": {None: S.INFO_RECEIVED, "trackingmore": S.PENDING},
    "UNK": {None: S.UNKNOWN},
    "NFD": {None: S.NOT_FOUND},
}
PREFIXES = list(EXPECTED)


def api_stats(sandbox: Any, api: str) -> dict:
    """The sandbox's counters of one API."""
    return sandbox.stats()[api]


def mixed_parcels(api: str, count: int = 23) -> list[dict]:
    """``count`` parcels cycling through every deterministic outcome."""
    return [
        {"carrier": CARRIER[api], "tracking_number": f"{PREFIXES[i % len(PREFIXES)]}{api[:3].upper()}{i:06d}"}
        for i in range(count)
    ]


def expected(api: str, number: str) -> ParcelStatus:
    """The canonical status ``api`` gives the sandbox parcel ``number``."""
    table = EXPECTED[number[:3]]
    return table.get(api, table[None])


def numbered(prefix: str, count: int, carrier: str = "ups", start: int = 1) -> list[dict[str, str]]:
    """``count`` parcel dicts whose numbers start with ``prefix`` (the sandbox's outcome scheme)."""
    return [{"carrier": carrier, "tracking_number": f"{prefix}-{i:06d}"} for i in range(start, start + count)]
