"""Hooks for the five tracking APIs; each module holds only what is its own."""

from __future__ import annotations

from airflow_provider_parcels.hooks.base import ParcelTrackingHook
from airflow_provider_parcels.hooks.exceptions import ParcelApiAuthError, ParcelApiError, ParcelConnectionError

HOOK_CLASSES: dict[str, str] = {
    "whereparcel": "airflow_provider_parcels.hooks.whereparcel.WhereParcelHook",
    "trackingmore": "airflow_provider_parcels.hooks.trackingmore.TrackingMoreHook",
    "trackflow": "airflow_provider_parcels.hooks.trackflow.TrackFlowHook",
    "parcellab": "airflow_provider_parcels.hooks.parcellab.ParcelLabHook",
    "shipengine": "airflow_provider_parcels.hooks.shipengine.ShipEngineHook",
}


def hook_for_connection(conn_id: str, **kwargs) -> ParcelTrackingHook:
    """
    The tracking hook that fits a connection's type (how operators and sensors pick one).

    :param conn_id: an Airflow connection of type whereparcel, trackingmore, trackflow,
        parcellab or shipengine.
    :param kwargs: passed to the hook (``requests_per_minute``, ``quota_share``, ...).
    """
    from airflow.sdk import BaseHook

    conn_type = BaseHook.get_connection(conn_id).conn_type
    return hook_class(conn_type, conn_id)(conn_id, **kwargs)


def hook_class(conn_type: str | None, conn_id: str = "?") -> type[ParcelTrackingHook]:
    """The hook class of a connection type; a clear error for any other type."""
    from airflow.sdk.module_loading import import_string

    path = HOOK_CLASSES.get((conn_type or "").lower())
    if path is None:
        raise ParcelConnectionError(
            f"connection {conn_id!r} has type {conn_type!r}; expected one of {', '.join(HOOK_CLASSES)}"
        )
    return import_string(path)


__all__ = [
    "HOOK_CLASSES",
    "ParcelApiAuthError",
    "ParcelApiError",
    "ParcelConnectionError",
    "ParcelTrackingHook",
    "hook_class",
    "hook_for_connection",
]
