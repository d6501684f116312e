"""
When a run holds more parcels than the day or month budget allows (issue 17, item 4): which to track first.

Parcels never tracked come first, then those checked longest ago, then those whose estimated delivery is
nearest; a parcel the warehouse knows in a terminal status is not tracked at all. Only as many as the
budget allows are tracked; the others wait for the next budget (they keep their last state).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import islice
from typing import Any

from airflow_provider_parcels.quota.ledger import QuotaStatus

#: (provider, carrier, tracking_number)
Key = tuple[str, str, str]
#: What the warehouse knows of a parcel: status, when it was last fetched, its estimated delivery.
Known = tuple[str | None, datetime | None, datetime | None]
TERMINAL = frozenset({"delivered", "exception", "expired"})
LOOKUP_BATCH = 300


def budget_left(status: QuotaStatus, reserve: float = 0.0) -> float | None:
    """
    Units this run may still use: the smaller of what is left of the day and of the month, minus the
    reserve kept for sensors and alerts; ``None`` when the key has no day or month budget.

    :param status: the key's :class:`~airflow_provider_parcels.quota.ledger.QuotaStatus`.
    :param reserve: the fraction of each budget kept back (0 keeps nothing).
    """
    lefts = [max(0.0, p.remaining - reserve * p.limit) for p in (status.day, status.month)
             if p.limit is not None and p.remaining is not None]
    return min(lefts) if lefts else None


def parcel_capacity(units: float, batch_size: int, counts_parcels: bool) -> int:
    """
    How many parcels ``units`` of budget track: one unit per parcel (TrackFlow), else one per batch.

    :param units: budget units left.
    :param batch_size: parcels per tracking call.
    :param counts_parcels: whether the API counts each parcel of a batch.
    """
    return math.floor(units) * (1 if counts_parcels else max(1, batch_size))


def _when(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return math.inf
    return math.inf


def priority(known: Known | None, index: int) -> tuple[float, float, float, int]:
    """
    The sort key of a parcel (smaller first): never tracked, then the oldest check, then the nearest
    estimated delivery, then the input order.

    :param known: what the warehouse has (``None``: never tracked).
    :param index: the parcel's position in the input.
    """
    if known is None:
        return (0.0, -math.inf, math.inf, index)
    _, fetched_at, estimated = known
    fetched = _when(fetched_at)
    return (1.0, -math.inf if fetched == math.inf else fetched, _when(estimated), index)


def prioritise(items: Iterable[Mapping[str, Any]], capacity: int, provider: str,
               lookup: Callable[[Sequence[Key]], Mapping[Key, Known]] | None,
               chunk_size: int = 1000) -> tuple[list[Mapping[str, Any]], int, int]:
    """
    The ``capacity`` parcels to track first, in that order, reading the input once (memory: the
    chosen parcels and one chunk).

    :param items: the run's parcels (dicts with ``carrier`` and ``tracking_number``).
    :param capacity: how many the budget allows.
    :param provider: the API, for the warehouse keys.
    :param lookup: what the warehouse knows of keys (``None``: no warehouse, every parcel is new).
    :param chunk_size: parcels looked up together.
    :return: the chosen parcels, how many wait for the next budget, how many were skipped as terminal.
    """
    heap: list[tuple[tuple[float, ...], int, Mapping[str, Any]]] = []
    waiting = terminal = index = 0
    iterator = iter(items)
    while chunk := list(islice(iterator, chunk_size)):
        keys = [(provider, str(item.get("carrier") or ""), str(item.get("tracking_number") or ""))
                if isinstance(item, Mapping) else (provider, "", "") for item in chunk]  # a bad input: its error row
        known = lookup(keys) if lookup is not None else {}
        for key, item in zip(keys, chunk, strict=True):
            index += 1
            have = known.get(key)
            if have is not None and str(have[0] or "").lower() in TERMINAL:
                terminal += 1
                continue
            rank = tuple(-x for x in priority(have, index))  # a max-heap of the worst kept
            if len(heap) < capacity:
                heapq.heappush(heap, (rank, index, item))
            elif capacity > 0 and rank > heap[0][0]:
                heapq.heapreplace(heap, (rank, index, item))
                waiting += 1
            else:
                waiting += 1
    chosen = [item for _, _, item in sorted(heap, key=lambda entry: entry[0], reverse=True)]
    return chosen, waiting, terminal


def warehouse_lookup(warehouse: Any) -> Callable[[Sequence[Key]], dict[Key, Known]]:
    """
    A ``lookup`` for :func:`prioritise` reading ``parcel_tracking`` (status, ``fetched_at``,
    ``estimated_delivery``) through the warehouse's connection, 300 keys a query.

    :param warehouse: a :class:`~airflow_provider_parcels.warehouse.ParcelWarehouse`.
    """

    def lookup(keys: Sequence[Key]) -> dict[Key, Known]:
        found: dict[Key, Known] = {}
        if not keys:
            return found
        warehouse.ensure_tables()
        p = warehouse.dialect.placeholder
        table = warehouse.table_name("parcel_tracking")
        with warehouse.connect() as conn:
            for start in range(0, len(keys), LOOKUP_BATCH):
                batch = keys[start:start + LOOKUP_BATCH]
                values = ", ".join([f"({p}, {p}, {p})"] * len(batch))
                sql = (f'WITH v(p, c, n) AS (VALUES {values}) SELECT t."provider", t."carrier", t."tracking_number", '
                       f't."status", t."fetched_at", t."estimated_delivery" FROM v JOIN {table} AS t '
                       'ON t."provider" = v.p AND t."carrier" = v.c AND t."tracking_number" = v.n')
                for provider, carrier, number, status, fetched, estimated in warehouse.query(
                        conn, sql, [x for key in batch for x in key]):
                    found[(provider, carrier, number)] = (status, fetched, estimated)
        return found

    return lookup
