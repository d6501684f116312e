"""WhereParcel: auth, batch limits, validation, outcomes, webhooks."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from airflow_provider_parcels.sandbox.outcomes import OutcomeBook, classify

AUTH = {"Authorization": "Bearer sandbox-key:sandbox-secret"}
EXPECTED = {
    "DLV": "delivered", "TRN": "in_transit", "OFD": "out_for_delivery", "EXC": "exception",
    "FAT": "delivery_failed", "PUP": "ready_for_pickup", "EXP": "exception", "PEN": "pending",
    "INF": "info_received", "UNK": "on_hold",
}


def _track(sandbox, http, items, headers=AUTH):
    return http.post(sandbox.base_url("whereparcel") + "/v2/track", headers=headers, json={"trackingItems": items})


@pytest.mark.parametrize("header", [
    None, "sandbox-key:sandbox-secret", "Bearer sandbox-key", "Bearer sandbox-key:", "Bearer :secret",
    "Bearer live-key:secret", "Basic sandbox-key:secret",
])
def test_auth_failures(sandbox, http, header):
    headers = {} if header is None else {"Authorization": header}
    response = _track(sandbox, http, [{"carrier": "kr.cj", "trackingNumber": "DLV1"}], headers)
    assert response.status_code == 401
    assert response.json() == {"success": False,
                               "error": {"code": "UNAUTHORIZED", "message": "Invalid or missing API key"}}


def test_batch_over_the_limit(sandbox, http):
    items = [{"carrier": "us.ups", "trackingNumber": f"DLV{i}"} for i in range(6)]
    response = _track(sandbox, http, items)
    assert response.status_code == 400
    assert response.json()["success"] is False and response.json()["error"]["code"] == "TOO_MANY_ITEMS"
    assert _track(sandbox, http, items[:5]).status_code == 200


@pytest.mark.parametrize("items", [
    [{"carrier": "us.ups"}], [{"trackingNumber": "DLV1"}], [{"carrier": "", "trackingNumber": "DLV1"}], [], ["DLV1"],
])
def test_validation_errors(sandbox, http, items):
    response = _track(sandbox, http, items)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_every_prefix(sandbox, http):
    items = [{"carrier": "us.ups", "trackingNumber": f"{prefix}-7"} for prefix in EXPECTED]
    items.append({"carrier": "us.ups", "trackingNumber": "NFD-7", "clientId": "c-nfd"})
    answers = [_track(sandbox, http, items[start:start + 5]).json() for start in range(0, len(items), 5)]
    results = [result for answer in answers for result in answer["results"]]
    assert [r["trackingNumber"] for r in results] == [item["trackingNumber"] for item in items]
    got = {r["trackingNumber"][:3]: r["data"]["status"] for r in results if r["success"]}
    assert got == EXPECTED
    failure = results[-1]
    assert failure == {"carrier": "us.ups", "trackingNumber": "NFD-7", "clientId": "c-nfd", "success": False,
                       "error": {"code": "NOT_FOUND", "message": "No tracking information found"}}
    assert answers[-1]["summary"] == {"total": 1, "succeeded": 0, "failed": 1}
    assert next(r for r in results if r["trackingNumber"] == "PEN-7")["data"]["events"] == []


def test_events_newest_first_with_offsets(sandbox, http):
    result = _track(sandbox, http, [{"carrier": "de.gls", "trackingNumber": "DLV-42", "clientId": "o-1"}])
    result = result.json()["results"][0]
    assert result["clientId"] == "o-1"
    events = result["data"]["events"]
    assert [e["status"] for e in events][:2] == ["delivered", "out_for_delivery"]
    moments = [datetime.fromisoformat(e["timestamp"]) for e in events]
    assert all(moment.utcoffset() is not None for moment in moments)
    assert moments == sorted(moments, reverse=True)
    assert "description" in events[0]


def test_picked_up_is_an_in_transit_word(sandbox, http):
    """Some in-transit parcels end at the pickup scan: WhereParcel says picked_up."""
    book = OutcomeBook()
    number = next(n for n in (f"HASH{i}" for i in itertools.count())
                  if classify(n).outcome == "in_transit" and book.lookup("x", n).last.kind == "picked_up")
    data = _track(sandbox, http, [{"carrier": "us.fedex", "trackingNumber": number}]).json()["results"][0]["data"]
    assert data["status"] == "picked_up"
    assert data["events"][0]["status"] == "picked_up"


def test_webhook_register(sandbox, http):
    url = sandbox.base_url("whereparcel") + "/v2/webhooks/register"
    body = {"url": "https://example.com/wp", "trackingNumber": "TRN1", "carrier": "kr.cj", "recurring": True}
    response = http.post(url, headers=AUTH, json=body)
    assert response.status_code == 200
    data = response.json()["data"]
    assert response.json()["success"] is True and data["id"].startswith("wh_")
    assert data["url"] == "https://example.com/wp" and data["recurring"] is True
    assert http.post(url, headers=AUTH, json={"recurring": True}).status_code == 400


def test_unknown_path(sandbox, http):
    response = http.get(sandbox.base_url("whereparcel") + "/v2/nothing", headers=AUTH)
    assert response.status_code == 404 and response.json()["success"] is False


def test_plan_quota(sandbox, http):
    headers = {"Authorization": "Bearer sandbox-starter:sandbox-secret"}
    response = _track(sandbox, http, [{"carrier": "kr.cj", "trackingNumber": "DLV1"}], headers)
    assert response.headers["X-RateLimit-Limit"] == "30"
    assert response.headers["X-RateLimit-Remaining"] == "29"
    assert int(response.headers["X-RateLimit-Reset"]) > 1e9
    assert "X-RateLimit-Limit" not in _track(sandbox, http, [{"carrier": "kr.cj", "trackingNumber": "DLV1"}]).headers


def test_sdk_keys_get_the_javascript_samples_item_shape(sandbox, http):
    """The doc's JS sample reads ``result.status === 'success'`` and ``result.data.deliveryStatus``."""
    headers = {"Authorization": "Bearer sandbox-sdk:sandbox-secret"}
    items = [{"carrier": "kr.cj", "trackingNumber": "DLV1", "clientId": "o-1"},
             {"carrier": "kr.cj", "trackingNumber": "NFD2"}]
    answer = _track(sandbox, http, items, headers).json()
    ok, failed = answer["results"]
    assert answer["success"] is True and answer["summary"] == {"total": 2, "succeeded": 1, "failed": 1}
    assert ok["status"] == "success" and "success" not in ok and ok["clientId"] == "o-1"
    assert ok["data"]["deliveryStatus"] == "delivered" and "status" not in ok["data"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "NOT_FOUND" and "data" not in failed
    plain = _track(sandbox, http, items).json()["results"][0]
    assert plain["success"] is True and plain["data"]["status"] == "delivered"
