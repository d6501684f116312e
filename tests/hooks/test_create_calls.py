"""The calls that create things: TrackingMore registration, parcelLab orders; and listing calls."""

from __future__ import annotations

from helpers.tracking import api_stats

from airflow_provider_parcels.models import ParcelStatus


def test_trackingmore_unregistered_numbers_are_not_found_errors(connect):
    hook = connect("trackingmore", requests_per_minute=6000)
    results = hook.track([{"carrier": "usps", "tracking_number": "NEWTM000001"},
                          {"carrier": "usps", "tracking_number": "DLVTM000002"}])
    assert results[0].status is ParcelStatus.NOT_FOUND and results[0].error.code == "not_found"
    assert "register_missing" in results[0].error.message
    assert results[1].status is ParcelStatus.DELIVERED


def test_trackingmore_register_missing_registers_then_tracks(connect, sandbox):
    hook = connect("trackingmore", requests_per_minute=6000, hook_kwargs={"register_missing": True})
    results = hook.track([{"carrier": "usps", "tracking_number": "NEWTM000011"},
                          {"carrier": "usps", "tracking_number": "DLVTM000012"}])
    assert results[0].error is None and results[0].status is not ParcelStatus.NOT_FOUND
    assert results[1].status is ParcelStatus.DELIVERED
    by_endpoint = api_stats(sandbox, "trackingmore")["by_endpoint"]
    assert any("batch" in name for name in by_endpoint), by_endpoint


def test_trackingmore_create_trackings_created_exists_error(connect, sandbox):
    hook = connect("trackingmore", requests_per_minute=6000)
    parcels = [{"carrier": "usps", "tracking_number": f"NEWCR{i:06d}", "order_id": f"o{i}"} for i in range(45)]
    parcels.append({"carrier": "usps", "tracking_number": "bad number"})
    first = hook.create_trackings(parcels)
    assert [r.outcome for r in first].count("created") == 45
    assert first[-1].outcome == "error" and "parcel #45" in first[-1].message
    batch_calls = sum(v for k, v in api_stats(sandbox, "trackingmore")["by_endpoint"].items() if "batch" in k)
    assert batch_calls == 2  # 45 valid parcels in batches of 40
    again = hook.create_trackings(parcels[:3])
    assert [r.outcome for r in again] == ["exists"] * 3


def test_parcellab_upsert_creates_once_then_updates(connect):
    hook = connect("parcellab", account=4711)
    order = {"order_number": "PCL-UPS-1", "recipient_email": "max@example.com",
             "mutations": [{"type": "add_tracking", "tracking": {"tracking_number": "DLVPL0001", "courier": "dhl"}}]}
    first = hook.upsert_orders([order])
    second = hook.upsert_orders([order])
    assert [r.outcome for r in first] == ["created"] and first[0].status_code == 201
    assert [r.outcome for r in second] == ["updated"] and second[0].status_code == 200
    stored = hook.get_order("PCL-UPS-1")
    assert stored["account"] == 4711
    assert hook.get_order("NFDPL00001") is None


def test_parcellab_list_orders_follows_cursor_to_the_end(connect, sandbox):
    hook = connect("parcellab")
    orders = list(hook.list_orders(page_size=25))
    assert len(orders) >= 120
    assert len({o["order_number"] for o in orders}) == len(orders)
    assert api_stats(sandbox, "parcellab")["requests"] == -(-len(orders) // 25)


def test_trackingmore_incremental_listing_pages(connect):
    import time

    hook = connect("trackingmore", requests_per_minute=6000)
    now = int(time.time())
    items = list(hook.iter_trackings(update_time_min=now - 72 * 3600, update_time_max=now, page_size=7))
    assert len(items) >= 50
    results = [hook.result_from_item(i) for i in items]
    assert all(r.provider == "trackingmore" and r.tracking_number for r in results)
