"""The plugin Airflow loads (entry point ``airflow.plugins``) and what becomes an alert asset event."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow_provider_parcels.models import ParcelStatus, TrackingResult
from airflow_provider_parcels.webhooks.assets import is_alert, webhook_alert_asset


def test_airflow_loads_the_plugin_with_the_receiver_mounted():
    from airflow.plugins_manager import _load_entrypoint_plugins

    plugins, errors = _load_entrypoint_plugins()
    ours = [p for p in plugins if p.name == "parcels_webhooks"]
    assert ours and not errors
    (app,) = ours[0].fastapi_apps
    assert app["url_prefix"] == "/parcels/webhooks"
    assert any(getattr(route, "path", "") == "/{conn_id}" for route in app["app"].routes)


def _result(status: ParcelStatus, eta: datetime | None) -> TrackingResult:
    return TrackingResult(provider="trackflow", carrier="dhl", tracking_number="X1", status=status,
                          estimated_delivery=eta)


def test_exceptions_and_late_parcels_are_alerts_others_are_not():
    now = datetime(2026, 6, 15, tzinfo=timezone.utc)
    assert is_alert(_result(ParcelStatus.EXCEPTION, None), now) == "exception"
    assert is_alert(_result(ParcelStatus.EXPIRED, None), now) == "exception"
    assert is_alert(_result(ParcelStatus.IN_TRANSIT, now - timedelta(days=1)), now) == "late"
    assert is_alert(_result(ParcelStatus.IN_TRANSIT, now + timedelta(days=1)), now) is None
    assert is_alert(_result(ParcelStatus.DELIVERED, now - timedelta(days=1)), now) is None


def test_alert_asset_uri_follows_the_warehouse():
    assert webhook_alert_asset("warehouse").uri == "parcels-alerts://warehouse/parcel_tracking"
    assert webhook_alert_asset("wh", "p_", "s").uri == "parcels-alerts://wh/s/p_parcel_tracking"
