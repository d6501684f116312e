"""What the example DAGs must produce, derived from the orders file and the sandbox's documented
tracking-number scheme (``docs/sandbox.md``), never from a run's own output."""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO / "example_dags"
ORDERS_FILE = EXAMPLE_DAGS / "data" / "orders.csv"

#: Canonical status per prefix as ShipEngine reports it: ShipEngine has no out-for-delivery code
#: (``OFD`` answers ``IT``) and no expired (``EXP`` answers ``EX``).
SHIPENGINE_STATUS = {
    "DLV": "delivered",
    "TRN": "in_transit",
    "OFD": "in_transit",
    "EXC": "exception",
    "FAT": "failed_attempt",
    "PUP": "available_for_pickup",
    "EXP": "exception",
    "PEN": "pending",
    "INF": "info_received",
    "UNK": "unknown",
    "NFD": "not_found",
}
TERMINAL = {"delivered", "exception", "expired"}


def read_orders() -> list[dict[str, str]]:
    """The bundled orders file."""
    with ORDERS_FILE.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
_TIMED = re.compile(r"^(POLL|SEC)([DX])(\d+)")


def rest(number: str) -> str:
    """The number without the TrackingMore-only ``NEW`` prefix (other APIs ignore it)."""
    upper = number.upper()
    return upper[3:] if upper.startswith("NEW") else upper


def poll_rule(number: str) -> tuple[str, int] | None:
    """``("delivered" | "exception", k)`` for a ``POLLD<k>``/``POLLX<k>`` number, else ``None``."""
    match = _TIMED.match(rest(number))
    if not match or match[1] != "POLL":
        return None
    return ("delivered" if match[2] == "D" else "exception", int(match[3]))


def shipengine_status(number: str, lookups: int) -> str:
    """The status ShipEngine reports for ``number`` at its ``lookups``-th lookup."""
    rule = poll_rule(number)
    if rule is not None:
        final, k = rule
        return final if lookups > k else "in_transit"
    return SHIPENGINE_STATUS[rest(number)[:3]]


def status_counts(numbers: Iterable[str], lookups: int) -> dict[str, int]:
    return dict(Counter(shipengine_status(n, lookups) for n in numbers))


def simulate_wait(numbers: Iterable[str], lookups_before: int,
                  targets: frozenset[str] = frozenset({"delivered", "exception", "expired"}),
                  fail_on: frozenset[str] = frozenset({"exception", "expired"})) -> tuple[int, set[str]]:
    """A sensor asking about its open parcels until all arrived or one failed: (requests, failed)."""
    lookups = dict.fromkeys(numbers, lookups_before)
    still_open = set(lookups)
    asked = 0
    while still_open:
        statuses = {}
        for number in still_open:
            lookups[number] += 1
            asked += 1
            statuses[number] = shipengine_status(number, lookups[number])
        failed = {n for n, s in statuses.items() if s in fail_on}
        if failed:
            return asked, failed
        still_open -= {n for n, s in statuses.items() if s in targets}
    return asked, set()


def late_by_sandbox(numbers: Iterable[str], now: dt.datetime) -> set[str]:
    """Parcels ``late_parcels`` must list: in exception, or not delivered and past the estimated
    delivery the sandbox derives from the number (its ``OutcomeBook``, peeking without a lookup)."""
    from airflow_provider_parcels.sandbox.outcomes import OutcomeBook

    book = OutcomeBook()
    late = set()
    for number in numbers:
        status = shipengine_status(number, 1)
        if status == "not_found":
            continue
        estimate = book.lookup("shipengine", number, count=False).estimated_delivery
        if status == "exception" or (status != "delivered" and estimate is not None and estimate < now):
            late.add(number)
    return late
