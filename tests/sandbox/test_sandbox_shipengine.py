"""ShipEngine: auth, parameters, status codes, zone-less local times, null/empty event status codes."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

KEY = {"API-Key": "sandbox-key"}
EXPECTED = {"DLV": "DE", "TRN": "IT", "OFD": "IT", "EXC": "EX", "FAT": "AT", "PUP": "SP", "EXP": "EX",
            "PEN": "NY", "INF": "AC", "UNK": "UN"}


def _track(sandbox, http, number, carrier="ups", headers=KEY):
    params = {"carrier_code": carrier, "tracking_number": number}
    return http.get(sandbox.base_url("shipengine") + "/v1/tracking", headers=headers, params=params)


@pytest.mark.parametrize("headers", [{}, {"API-Key": "__YOUR_API_KEY_HERE__"}])
def test_auth_failures(sandbox, http, headers):
    response = _track(sandbox, http, "DLV1", headers=headers)
    assert response.status_code == 401
    error = response.json()["errors"][0]
    assert response.json()["request_id"]
    assert (error["error_source"], error["error_type"], error["error_code"]) == ("shipengine", "security",
                                                                                 "unauthorized")


def test_missing_parameters_and_not_found(sandbox, http):
    url = sandbox.base_url("shipengine") + "/v1/tracking"
    missing = http.get(url, headers=KEY, params={"tracking_number": "DLV1"})
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["error_type"] == "validation"
    assert len(http.get(url, headers=KEY).json()["errors"]) == 2
    not_found = _track(sandbox, http, "NFD1")
    assert not_found.status_code == 404 and not_found.json()["errors"][0]["error_code"] == "not_found"


def test_every_prefix(sandbox, http):
    for prefix, code in EXPECTED.items():
        answer = _track(sandbox, http, f"{prefix}00001").json()
        assert answer["status_code"] == code, prefix
    ofd = _track(sandbox, http, "OFD00001").json()
    assert ofd["events"][0]["description"] == "Out for Delivery"
    delivered = _track(sandbox, http, "DLV00001").json()
    assert delivered["actual_delivery_date"] == delivered["events"][0]["occurred_at"]
    assert _track(sandbox, http, "EXC00001").json()["exception_description"]
    assert _track(sandbox, http, "PEN00001").json()["events"] == []


def test_zone_less_local_times_and_event_status_codes(sandbox, http):
    events = _track(sandbox, http, "DLV-ZONES", carrier="usps").json()["events"]
    assert len(events) == 6
    for event in events:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["occurred_at"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", event["carrier_occurred_at"])
        utc = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")).replace(tzinfo=None)
        local = datetime.fromisoformat(event["carrier_occurred_at"])
        assert utc - local in {timedelta(hours=h) for h in range(0, 9)}  # US zones are behind UTC
        assert event["status_code"] in (None, "") and event["status_description"] is None
    assert {event["status_code"] for event in events} == {None, ""}


def test_advanced_plan_quota(sandbox, http):
    headers = {"API-Key": "sandbox-advanced"}
    answer = _track(sandbox, http, "DLV1", headers=headers)
    assert answer.headers["X-RateLimit-Limit"] == "200" and answer.headers["X-RateLimit-Remaining"] == "199"
    carriers = http.get(sandbox.base_url("shipengine") + "/v1/carriers", headers=KEY).json()
    assert "usps" in {carrier["carrier_code"] for carrier in carriers["carriers"]}
