"""
Hybrid sync: with webhooks, the scheduled tracking run polls only the open parcels that push does
not cover, i.e. with no live subscription, or whose subscription has been silent for longer than
the safety net (``TrackParcelsOperator(parcels=OPEN_PARCELS_NOT_PUSHED, push_safety_net_hours=24)``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from airflow_provider_parcels.warehouse import ParcelWarehouse
from airflow_provider_parcels.webhooks.subscriptions import ACTIVE, SubscriptionStore


def open_parcels_not_pushed(warehouse: ParcelWarehouse, provider: str, max_silence_seconds: float,
                            now: float | None = None) -> Iterator[dict[str, Any]]:
    """
    The warehouse's open parcels of ``provider`` minus those a live subscription covers.

    :param warehouse: the warehouse holding ``parcel_tracking`` and ``parcel_subscriptions``.
    :param provider: the API.
    :param max_silence_seconds: a subscription with no event (nor registration, nor safety-net
        poll) for longer than this no longer counts as live: its parcel is polled, and the poll
        restarts its silence clock (one poll per ``max_silence_seconds`` of silence, not one an hour).
    :param now: epoch seconds (default now).
    """
    now = time.time() if now is None else now
    store = SubscriptionStore(warehouse)
    subscribed = {s.key[1:] for s in store.all(provider) if s.state == ACTIVE}
    live = store.live(provider, max_silence_seconds, now)
    rechecked: list[tuple[str, str]] = []
    for parcel in warehouse.open_parcels(provider=provider):
        key = (parcel["carrier"], parcel["tracking_number"])
        if key in live:
            continue
        if key in subscribed:
            rechecked.append(key)
        yield parcel
    if rechecked:  # polled now: the silence clock of these subscriptions starts again
        store.checked(provider, rechecked, now)
