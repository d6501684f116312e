"""Helpers of the hostile-server tests."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers.tracking import CARRIER

from airflow_provider_parcels.hooks.base import ParcelTrackingHook

APIS = ["whereparcel", "trackingmore", "trackflow", "parcellab", "shipengine"]
#: The APIs that answer several parcels per call, each entry on its own, and their largest batch.
BATCH_APIS = {"whereparcel": 5, "trackingmore": 40, "trackflow": 50}


def track(hook: ParcelTrackingHook, parcels: list[dict], path: str) -> list[Any]:
    """``hook.track(parcels)`` on the sync path, or ``hook.atrack(parcels)`` on the async path (the trigger's)."""
    if path == "sync":
        return hook.track(parcels)
    return asyncio.run(hook.atrack(parcels))


def numbers(api: str, prefix: str, count: int) -> list[dict]:
    """``count`` parcels of ``api`` whose numbers start with the sandbox outcome ``prefix``."""
    return [{"carrier": CARRIER[api], "tracking_number": f"{prefix}{api[:3].upper()}{i:06d}"} for i in range(count)]
