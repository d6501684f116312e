"""parcelLab: DRF errors, idempotent upsert, creation conflicts, cursor paging, synthesized orders."""

from __future__ import annotations

import pytest

AUTH = {"Authorization": "Bearer sandbox-key"}
ORDER = {"account": 7, "order_number": "O-1", "recipient_email": "_unset",
         "mutations": [{"type": "add_tracking", "tracking": {"tracking_number": "DLV-PL-1", "courier": "dhl"}}]}
EXPECTED = {
    "DLV": "Delivered", "TRN": "InTransit", "OFD": "OutForDelivery", "EXC": "Exception", "FAT": "FailedAttempt",
    "PUP": "PickupReady", "EXP": "Expired", "PEN": "Pending", "INF": "OrderProcessed", "UNK": "Held",
}


def _orders(sandbox) -> str:
    return sandbox.base_url("parcellab") + "/v4/track/orders/"


@pytest.mark.parametrize(("headers", "message"), [
    ({}, "Authentication credentials were not provided."),
    ({"Authorization": "Bearer JWT"}, "Invalid token."),
    ({"Authorization": "Token sandbox-key"}, "Invalid token."),
])
def test_auth_failures(sandbox, http, headers, message):
    response = http.get(_orders(sandbox), headers=headers)
    assert response.status_code == 401 and response.json() == {"detail": message}


def test_put_creates_then_updates(sandbox, http):
    first = http.put(_orders(sandbox), headers=AUTH, json=ORDER)
    assert first.status_code == 201
    assert first.json() == {"order_number": "O-1", "external_reference": None, "account": 7, "created": True}
    second = http.put(_orders(sandbox), headers=AUTH, json={**ORDER, "recipient_name": "Ada"})
    assert second.status_code == 200 and second.json()["created"] is False
    order = http.get(_orders(sandbox) + "O-1/", headers=AUTH).json()
    assert order["recipient_name"] == "Ada"
    assert [t["tracking_number"] for t in order["trackings"]] == ["DLV-PL-1"]  # not added twice
    assert order["trackings"][0]["checkpoints"][-1]["status_code"] == "Delivered"


def test_post_conflict_and_lookup_by_external_reference(sandbox, http):
    body = {"account": 1, "external_reference": "ERP-9", "recipient_email": "a@b.example"}
    assert http.post(_orders(sandbox), headers=AUTH, json=body).status_code == 201
    conflict = http.post(_orders(sandbox), headers=AUTH, json=body)
    assert conflict.status_code == 400 and conflict.json() == {"detail": "Order already exists."}
    assert http.post(_orders(sandbox), headers=AUTH, json={**ORDER, "order_number": "PL-DEMO-0001"}).status_code == 400
    order = http.get(_orders(sandbox) + "ERP-9/", headers=AUTH).json()
    assert order["external_reference"] == "ERP-9" and order["trackings"] == []


@pytest.mark.parametrize(("change", "field"), [
    ({"account": None}, "account"),
    ({"account": "seven"}, "account"),
    ({"recipient_email": None}, "recipient_email"),
    ({"recipient_email": "not-an-email"}, "recipient_email"),
    ({"order_total_amount": "123456789.00"}, "order_total_amount"),
    ({"order_tax_amount": "1.234"}, "order_tax_amount"),
    ({"destination_country_iso3": "DE"}, "destination_country_iso3"),
    ({"language_iso2": "deu"}, "language_iso2"),
    ({"order_number": None}, "non_field_errors"),
    ({"mutations": [{"type": "add_tracking", "tracking": {"tracking_number": "X1"}}]}, "mutations"),
])
def test_validation(sandbox, http, change, field):
    body = {**ORDER, **change}
    body = {name: value for name, value in body.items() if value is not None}
    response = http.put(_orders(sandbox), headers=AUTH, json=body)
    assert response.status_code == 400
    assert field in response.json()
    if field == "account" and "account" not in body:
        assert response.json()["account"] == ["This field is required."]


def test_valid_amounts_pass(sandbox, http):
    body = {**ORDER, "order_total_amount": "-12345678.5", "order_net_amount": 10, "order_tax_amount": ".99",
            "destination_country_iso3": "deu", "language_iso2": "DE"}
    assert http.put(_orders(sandbox), headers=AUTH, json=body).status_code == 201


def test_cursor_pagination_to_the_end(sandbox, http):
    for index in range(3):
        assert http.put(_orders(sandbox), headers=AUTH, json={**ORDER, "order_number": f"NEW-{index}"}).ok
    url, seen, pages = _orders(sandbox) + "?page_size=25", [], 0
    while url:
        page = http.get(url, headers=AUTH).json()
        seen += [row["order_number"] for row in page["results"]]
        url, pages = page["next"], pages + 1
        if pages == 2:
            back = http.get(page["previous"], headers=AUTH).json()
            assert [row["order_number"] for row in back["results"]] == seen[:25]
    assert pages == 5 and len(seen) == len(set(seen)) == 123
    assert seen[:3] == ["NEW-2", "NEW-1", "NEW-0"]  # newest first by default
    ordered = http.get(_orders(sandbox), headers=AUTH, params={"ordering": "order_number", "page_size": 2}).json()
    assert [row["order_number"] for row in ordered["results"]] == ["NEW-0", "NEW-1"]
    assert "ordering=order_number" in ordered["next"]
    assert http.get(_orders(sandbox), headers=AUTH, params={"cursor": "garbage!"}).status_code == 404


def test_synthesized_orders_follow_the_scheme(sandbox, http):
    for prefix, code in EXPECTED.items():
        order = http.get(_orders(sandbox) + f"{prefix}-ORDER-1/", headers=AUTH)
        assert order.status_code == 200
        tracking = order.json()["trackings"][0]
        assert tracking["tracking_number"] == f"{prefix}-ORDER-1" and tracking["courier"] == "dhl"
        checkpoints = tracking["checkpoints"]
        assert checkpoints[-1]["status_code"] == code, prefix
        stamps = [c["event_timestamp"] for c in checkpoints]
        assert stamps == sorted(stamps) and all(s.endswith("Z") for s in stamps)
    assert http.get(_orders(sandbox) + "NFD-ORDER-1/", headers=AUTH).json() == {"detail": "Not found."}
    assert http.get(_orders(sandbox) + "info-1/", headers=AUTH).status_code == 404
    exception = http.get(_orders(sandbox) + "EXC-ORDER-1/", headers=AUTH).json()["trackings"][0]
    assert exception["checkpoints"][-1]["exception"]


def test_throttled_detail(sandbox, http):
    sandbox.configure(rpm=1)
    assert http.get(_orders(sandbox), headers=AUTH).status_code == 200
    refused = http.get(_orders(sandbox), headers=AUTH)
    assert refused.status_code == 429
    detail = refused.json()["detail"]
    assert detail.startswith("Request was throttled. Expected available in ") and detail.endswith(" seconds.")
