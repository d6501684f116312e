"""The data model: validation of what users hand in, and the JSON round trip used for XCom."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from airflow_provider_parcels.models import (
    MAX_TRACKING_NUMBER_LENGTH,
    InvalidParcelError,
    Parcel,
    ParcelStatus,
    TrackingError,
    TrackingEvent,
    TrackingResult,
)


def test_terminal_statuses():
    assert {s for s in ParcelStatus if s.is_terminal} == {
        ParcelStatus.DELIVERED, ParcelStatus.EXCEPTION, ParcelStatus.EXPIRED}
    assert ParcelStatus.parse("Delivered") is ParcelStatus.DELIVERED
    with pytest.raises(ValueError, match="accepted: pending, not_found"):
        ParcelStatus.parse("lost")


def test_parcel_is_normalised_and_coerced():
    parcel = Parcel.coerce({"carrier": " usps ", "tracking_number": " 9400111 ", "client_id": 42,
                            "postal_code": "", "phone_number": None})
    assert parcel == Parcel("usps", "9400111", client_id="42")
    assert Parcel.from_dict(parcel.to_dict()) == parcel


@pytest.mark.parametrize(
    ("number", "pattern"),
    [
        (None, r"parcel #7 .*missing field\(s\) tracking_number"),
        ("", r"parcel #7 .*empty or white space"),
        ("   \t", r"parcel #7 .*empty or white space"),
        (12345, r"parcel #7 .*must be a string, got int"),
        ("A" * (MAX_TRACKING_NUMBER_LENGTH + 1), rf"parcel #7 .*the limit is {MAX_TRACKING_NUMBER_LENGTH}"),
        ("ÜBER123", r"parcel #7 \(tracking_number='ÜBER123'\).*found 'Ü'"),
        ("AB\x00CD", r"parcel #7 .*found '\\x00'"),
        ("1'; DROP TABLE parcel_tracking;--", r"parcel #7 .*found ' ', \"'\""),
        ("-LEADING", r"parcel #7 .*ASCII letters"),
    ],
)
def test_bad_tracking_numbers_name_the_parcel(number, pattern):
    with pytest.raises(InvalidParcelError, match=pattern):
        Parcel.coerce({"carrier": "usps", "tracking_number": number}, index=7)


@pytest.mark.parametrize(
    ("item", "pattern"),
    [
        (["usps", "123"], r"parcel #3: expected a mapping .* got list"),
        ("123", r"parcel #3: expected a mapping .* got str"),
        ({"tracking_number": "123"}, r"parcel #3 .*missing field\(s\) carrier"),
        ({"carrier": "u s p s", "tracking_number": "123"}, r"parcel #3 .*carrier must be a carrier code"),
        ({"carrier": "usps", "tracking_number": "123", "postal_code": "x" * 200}, r"postal_code must be"),
        ({"carrier": "usps", "tracking_number": "123", "client_id": ["a"]}, r"client_id must be a string"),
    ],
)
def test_bad_rows_name_the_parcel_and_field(item, pattern):
    with pytest.raises(InvalidParcelError, match=pattern):
        Parcel.coerce(item, index=3)


def test_event_id_is_stable_and_content_based():
    a = TrackingEvent(None, "2015-10-25 15:01", ParcelStatus.UNKNOWN, None, "Arrived", "RENTON", raw={"x": 1})
    b = TrackingEvent(None, "2015-10-25 15:01", ParcelStatus.UNKNOWN, None, "Arrived", "RENTON", raw={"y": 2})
    c = TrackingEvent(None, "2015-10-25 15:02", ParcelStatus.UNKNOWN, None, "Arrived", "RENTON")
    assert a.event_id == b.event_id != c.event_id
    assert len(a.event_id) == 32


def test_result_json_round_trip():
    when = datetime(2026, 2, 5, 5, 30, tzinfo=timezone.utc)
    result = TrackingResult(
        provider="whereparcel", carrier="kr.cj", tracking_number="123", status=ParcelStatus.DELIVERED,
        provider_status="delivered", client_id="order-1", delivered_at=when,
        events=(TrackingEvent(when, "2026-02-05T14:30:00+09:00", ParcelStatus.DELIVERED, "delivered",
                              "배달완료", "서울", raw={"a": 1}),),
        raw={"k": "v"},
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert TrackingResult.from_dict(data) == result
    compact = result.to_dict(include_raw=False, include_events=False)
    assert "raw" not in compact and "events" not in compact
    failure = TrackingResult.failure("shipengine", Parcel("usps", "NFD1"), "not_found", "no record",
                                     ParcelStatus.NOT_FOUND)
    assert TrackingResult.from_dict(json.loads(json.dumps(failure.to_dict()))).error == TrackingError(
        "not_found", "no record")
    assert failure.status is ParcelStatus.NOT_FOUND and not failure.ok
