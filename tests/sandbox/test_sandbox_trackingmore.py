"""TrackingMore: errors inside HTTP 200, NEW numbers, creation, listing and mixed dates."""

from __future__ import annotations

import re
import time

import pytest

KEY = {"Trackingmore-Api-Key": "sandbox-key"}
EXPECTED = {
    "DLV": "delivered", "TRN": "transit", "OFD": "pickup", "EXC": "exception", "FAT": "undelivered",
    "PUP": "transit", "EXP": "expired", "PEN": "pending", "INF": "pending", "UNK": "alert", "NFD": "notfound",
}


def _get(sandbox, http, headers=KEY, **params):
    response = http.get(sandbox.base_url("trackingmore") + "/trackings/get", headers=headers, params=params)
    assert response.status_code == 200
    return response.json()


def _post(sandbox, http, path, body, headers=KEY):
    response = http.post(sandbox.base_url("trackingmore") + path, headers=headers, json=body)
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("headers", [{}, {"Trackingmore-Api-Key": "live-123"}])
def test_bad_key_is_http_200_with_4001(sandbox, http, headers):
    answer = _get(sandbox, http, headers=headers, numbers="DLV1")
    assert answer == {"meta": {"code": 4001, "type": "Bad Request", "message": "Invalid API key."}, "data": []}


def test_too_many_numbers_and_too_large_limit(sandbox, http):
    answer = _get(sandbox, http, numbers=",".join(f"DLV{i}" for i in range(41)))
    assert answer["meta"]["code"] == 4031 and answer["data"] == []
    assert _get(sandbox, http, numbers=",".join(f"DLV{i}" for i in range(40)))["meta"]["code"] == 200
    assert _get(sandbox, http, limit=2001)["meta"]["code"] == 4031
    batch = _post(sandbox, http, "/trackings/batch",
                  [{"tracking_number": f"NEW{i}", "carrier_code": "usps"} for i in range(41)])
    assert batch["meta"]["code"] == 4031


def test_every_prefix(sandbox, http):
    numbers = [f"{prefix}0042" for prefix in EXPECTED]
    items = _get(sandbox, http, numbers=",".join(numbers))["data"]["items"]
    assert {item["tracking_number"][:3]: item["status"] for item in items} == EXPECTED
    notfound = next(item for item in items if item["status"] == "notfound")
    assert notfound["origin_info"]["trackinfo"] == [] and notfound["lastEvent"] is None


def test_new_numbers_absent_until_created(sandbox, http):
    assert _get(sandbox, http, numbers="NEWDLV1,DLV1")["data"]["total"] == "1"
    created = _post(sandbox, http, "/trackings/post",
                    {"tracking_number": "NEWDLV1", "carrier_code": "usps", "order_id": "A-1", "title": "shoes"})
    assert created["meta"] == {"code": 201, "type": "Created", "message": "Success"}
    assert created["data"]["tracking_number"] == "NEWDLV1" and created["data"]["order_id"] == "A-1"
    items = _get(sandbox, http, numbers="NEWDLV1,DLV1")["data"]["items"]
    assert [(i["tracking_number"], i["status"]) for i in items] == [("NEWDLV1", "delivered"), ("DLV1", "delivered")]
    again = _post(sandbox, http, "/trackings/post", {"tracking_number": "NEWDLV1", "carrier_code": "usps"})
    assert again["meta"]["code"] == 4016 and again["meta"]["message"] == "Tracking already exists."
    assert _post(sandbox, http, "/trackings/post", {"tracking_number": "DLV1", "carrier_code": "usps"})[
        "meta"]["code"] == 4016


def test_batch_create_with_errors(sandbox, http):
    body = [
        {"tracking_number": "NEWA1", "carrier_code": "dhl"},
        {"tracking_number": "NEWA1", "carrier_code": "dhl"},
        {"tracking_number": "TRN77", "carrier_code": "ups"},
        {"carrier_code": "ups"},
        {"tracking_number": "NEWA2"},
        {"tracking_number": "NEWA3", "carrier_code": "usps", "order_id": "O-3"},
    ]
    answer = _post(sandbox, http, "/trackings/batch", body)
    assert answer["meta"]["code"] == 201
    data = answer["data"]
    assert data["submitted"] == 6 and data["added"] == 2
    assert [t["tracking_number"] for t in data["trackings"]] == ["NEWA1", "NEWA3"]
    assert [(e["tracking_number"], e["code"]) for e in data["errors"]] == [
        ("NEWA1", 4016), ("TRN77", 4016), (None, 4013), ("NEWA2", 4015)]
    assert data["errors"][0]["message"] == "Tracking already exists."


def test_mixed_zone_less_date_formats(sandbox, http):
    item = _get(sandbox, http, numbers="DLV-MIXED")["data"]["items"][0]
    dates = [entry["Date"] for side in ("origin_info", "destination_info") for entry in item[side]["trackinfo"]]
    assert len(dates) == 6
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", d) for d in dates)
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", d) for d in dates)
    assert not any("T" in d or "+" in d or d.endswith("Z") for d in dates)


def test_account_listing_filters_and_paging(sandbox, http):
    answer = _get(sandbox, http, limit=25, page=3)
    assert answer["data"]["total"] == "60" and len(answer["data"]["items"]) == 10
    _post(sandbox, http, "/trackings/post", {"tracking_number": "NEWLIST1", "carrier_code": "usps"})
    everything = _get(sandbox, http, limit=2000)["data"]
    assert everything["total"] == "61"
    numbers = [item["tracking_number"] for item in everything["items"]]
    assert numbers[:2] == ["TMDEMO0001", "TMDEMO0002"] and "NEWLIST1" in numbers
    assert len({item["carrier_code"] for item in everything["items"]}) > 3
    now = int(time.time())
    recent = _get(sandbox, http, limit=2000, update_time_min=now - 24 * 3600)["data"]
    assert 0 < int(recent["total"]) < 61
    delivered = _get(sandbox, http, limit=2000, status="delivered")["data"]
    assert all(item["status"] == "delivered" for item in delivered["items"])
    assert int(delivered["total"]) == len(delivered["items"])


def test_realtime_and_single_get(sandbox, http):
    answer = _post(sandbox, http, "/trackings/realtime", {"tracking_number": "OFD-9", "carrier_code": "ups"})
    assert answer["meta"]["code"] == 200
    assert answer["data"]["items"][0]["status"] == "pickup"
    assert answer["data"]["items"][0]["carrier_code"] == "ups"
    nfd = _post(sandbox, http, "/trackings/realtime", {"tracking_number": "NFD-9", "carrier_code": "ups"})
    assert nfd["data"]["items"][0]["status"] == "notfound"
    assert _post(sandbox, http, "/trackings/realtime", {"carrier_code": "ups"})["meta"]["code"] == 4013
    base = sandbox.base_url("trackingmore")
    assert http.get(base + "/trackings/usps/NEWX1", headers=KEY).json()["meta"]["code"] == 4017
    assert http.get(base + "/trackings/usps/EXC1", headers=KEY).json()["data"]["status"] == "exception"


def test_quota_refusal_is_http_200_with_4029(sandbox, http):
    headers = {"Trackingmore-Api-Key": "sandbox-standard"}
    sandbox.configure(rpm=1)  # the plan wins over rpm
    for _ in range(60):
        assert _get(sandbox, http, headers=headers, numbers="DLV1")["meta"]["code"] == 200
    response = http.get(sandbox.base_url("trackingmore") + "/trackings/get", headers=headers,
                        params={"numbers": "DLV1"})
    assert response.status_code == 200
    assert response.json()["meta"] == {"code": 4029, "type": "Bad Request",
                                       "message": "Request frequency exceeded the limit."}
    assert response.headers["X-RateLimit-Limit"] == "60" and response.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert sandbox.stats()["trackingmore"]["rate_limited"] == 1


def test_batch_where_every_tracking_exists_answers_4016_in_the_envelope(sandbox, http):
    body = [{"tracking_number": "DLVALL1", "carrier_code": "usps"},
            {"tracking_number": "TRNALL2", "carrier_code": "ups"}]
    answer = _post(sandbox, http, "/trackings/batch", body)
    assert answer == {"meta": {"code": 4016, "type": "Bad Request", "message": "Tracking already exists."},
                      "data": []}
    mixed = _post(sandbox, http, "/trackings/batch", [*body, {"tracking_number": "NEWALL3", "carrier_code": "usps"}])
    assert mixed["meta"]["code"] == 201 and [e["code"] for e in mixed["data"]["errors"]] == [4016, 4016]
