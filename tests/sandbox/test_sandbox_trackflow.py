"""TrackFlow: auth, number format, plans and batch sizes, item-counted quota, outcomes."""

from __future__ import annotations

import pytest

KEY = {"X-API-Key": "sandbox-key"}
EXPECTED = {
    "DLV": "delivered", "TRN": "in_transit", "OFD": "out_for_delivery", "EXC": "exception",
    "FAT": "failed_attempt", "PUP": "available_for_pickup", "EXP": "exception", "PEN": "pending",
    "INF": "info_received", "UNK": "on_hold",
}


def _one(sandbox, http, number, headers=KEY, **params):
    return http.get(sandbox.base_url("trackflow") + f"/v2/track/{number}", headers=headers, params=params)


def _batch(sandbox, http, numbers, headers=KEY):
    body = {"shipments": [{"tracking_number": n, "carrier": "ups"} for n in numbers]}
    return http.post(sandbox.base_url("trackflow") + "/v2/track/batch", headers=headers, json=body)


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "tf_live_sk_xxxxxxxxxxxxxxxxxxxx"}])
def test_auth_failures(sandbox, http, headers):
    response = _one(sandbox, http, "DLV12345", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": {"code": "unauthorized",
                                                           "message": "Missing or invalid API key."}}


def test_invalid_number_and_not_found(sandbox, http):
    invalid = _one(sandbox, http, "AB$")
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "invalid_tracking_number"
    missing = _one(sandbox, http, "NFD12345")
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "error": {"code": "not_found",
                                                          "message": "No tracking data found for this number."}}


def test_every_prefix_and_the_event_trap(sandbox, http):
    for prefix, word in EXPECTED.items():
        answer = _one(sandbox, http, f"{prefix}-1234", carrier="fedex").json()
        assert answer["status"] == word, prefix
        assert answer["carrier"]["code"] == "fedex"
        for event in answer["events"]:
            assert event["status"] not in EXPECTED.values()  # a description, not a status word
            assert event["type"] in {*EXPECTED.values(), "transit"}
    delivered = _one(sandbox, http, "DLV-1234").json()
    assert delivered["events"][0]["type"] == "delivered"
    assert delivered["events"][0]["status"] == delivered["status_description"]
    assert "transit" in {event["type"] for event in delivered["events"]}


@pytest.mark.parametrize(("key", "size"), [("sandbox-free", 5), ("sandbox-starter", 20), ("sandbox-growth", 50),
                                           ("sandbox-enterprise", 50), ("sandbox-key", 50)])
def test_batch_size_by_plan(sandbox, http, key, size):
    headers = {"X-API-Key": key}
    assert _batch(sandbox, http, [f"DLV{i:04d}" for i in range(size)], headers).status_code == 200
    sandbox.reset()
    too_large = _batch(sandbox, http, [f"DLV{i:04d}" for i in range(size + 1)], headers)
    assert too_large.status_code == 400 and too_large.json()["error"]["code"] == "batch_too_large"


def test_batch_answer_per_shipment(sandbox, http):
    answer = _batch(sandbox, http, ["DLV-0001", "NFD-0002", "x", "EXC-0003"]).json()
    assert answer["success"] is True and answer["count"] == 4
    results = answer["results"]
    assert [r["success"] for r in results] == [True, False, False, True]
    assert results[1] == {"success": False, "tracking_number": "NFD-0002",
                          "error": {"code": "not_found", "message": "No tracking data found for this number."}}
    assert results[2]["error"]["code"] == "invalid_tracking_number"
    assert results[3]["status"] == "exception"


def test_quota_counts_items(sandbox, http):
    headers = {"X-API-Key": "sandbox-free"}  # 10 lookups a minute
    first = _batch(sandbox, http, [f"TRN{i:04d}" for i in range(5)], headers)
    assert first.headers["X-RateLimit-Remaining"] == "5"
    assert "X-RateLimit-Limit" not in first.headers and int(first.headers["X-RateLimit-Reset"]) > 1e9
    assert _batch(sandbox, http, [f"TRN{i:04d}" for i in range(5)], headers).status_code == 200
    refused = _one(sandbox, http, "TRN0001", headers=headers)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["X-RateLimit-Remaining"] == "0" and "Retry-After" in refused.headers
    stats = sandbox.stats()["trackflow"]
    assert stats["items"] == 11 and stats["max_batch"] == 5 and stats["rate_limited"] == 1
    assert _one(sandbox, http, "TRN0001", headers={"X-API-Key": "sandbox-enterprise"}).status_code == 200


def test_carriers_and_webhook_validation(sandbox, http):
    base = sandbox.base_url("trackflow")
    assert http.get(base + "/v2/carriers", headers=KEY).json()["count"] >= 2
    bad = http.post(base + "/v2/webhooks", headers=KEY, json={"tracking_number": "DLV1234", "events": ["all"]})
    assert bad.status_code == 400 and bad.json()["success"] is False
    assert http.delete(base + "/v2/webhooks/wh_nothing", headers=KEY).status_code == 404
