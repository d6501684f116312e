"""Every request/response example of the five vendor docs, replayed against the sandbox with
only the host (and the key) changed; the answers must have the documented shape."""

from __future__ import annotations

import re

import pytest

WP_DOC_ITEMS = [
    {"carrier": "kr.cj", "trackingNumber": "123456789012"},
    {"carrier": "de.gls", "trackingNumber": "48117308687", "postalCode": "04179"},
]
WP_AUTH = {"Authorization": "Bearer sandbox-key:sandbox-secret", "Content-Type": "application/json"}
ISO_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _same_keys(actual: dict, documented: dict, optional: set[str] = frozenset()) -> None:
    assert set(documented) - optional <= set(actual), set(documented) - set(actual)


# --- WhereParcel ----------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    {"trackingItems": WP_DOC_ITEMS},  # curl, fetch, Go and the SDK's trackBulk
    {"trackingItems": [{"carrier": "kr.cj", "trackingNumber": "123456789012"},
                       {"carrier": "de.gls", "trackingNumber": "48117308687"}]},
], ids=["curl", "sdk"])
def test_whereparcel_track_example(sandbox, http, doc_example, body):
    response = http.post(sandbox.base_url("whereparcel") + "/v2/track", headers=WP_AUTH, json=body)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    answer, documented = response.json(), doc_example("whereparcel_track_response")
    assert answer["success"] is True
    assert answer["summary"] == {"total": 2, "succeeded": 2, "failed": 0}
    assert [r["trackingNumber"] for r in answer["results"]] == ["123456789012", "48117308687"]
    doc_result = documented["results"][0]
    for result in answer["results"]:
        _same_keys(result, doc_result, optional={"clientId"})
        assert "clientId" not in result
        _same_keys(result["data"], doc_result["data"])
        assert isinstance(result["data"]["events"], list)
        for event in result["data"]["events"]:
            _same_keys(event, doc_result["data"]["events"][1])
            assert ISO_OFFSET.match(event["timestamp"])
    assert answer["results"][0]["data"]["carrierName"] == "CJ대한통운"
    assert answer["results"][0]["data"]["events"][0]["timestamp"].endswith("+09:00")


def test_whereparcel_python_sample_sends_an_object(sandbox, http):
    """The doc's Python (and PHP-like) sample sends trackingItems as {"0": ..., "1": ...}."""
    body = {"trackingItems": {"0": WP_DOC_ITEMS[0], "1": WP_DOC_ITEMS[1]}}
    response = http.post(sandbox.base_url("whereparcel") + "/v2/track", headers=WP_AUTH, json=body)
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": {"code": "VALIDATION_ERROR",
                                                           "message": "trackingItems must be an array"}}


def test_whereparcel_doc_401_and_429_bodies(sandbox, http, doc_example):
    url = sandbox.base_url("whereparcel") + "/v2/track"
    doc_key = {"Authorization": "Bearer wp_test_public_demo_key_do_not_use_in_production:"
                                "sk_test_public_demo_secret_do_not_use_in_production"}
    refused = http.post(url, headers=doc_key, json={"trackingItems": WP_DOC_ITEMS})
    assert refused.status_code == 401
    assert refused.json() == doc_example("whereparcel_401_response")
    free = {"Authorization": "Bearer sandbox-free:sandbox-secret"}
    assert http.post(url, headers=free, json={"trackingItems": WP_DOC_ITEMS}).status_code == 200
    limited = http.post(url, headers=free, json={"trackingItems": WP_DOC_ITEMS})
    assert limited.status_code == 429
    assert limited.json() == doc_example("whereparcel_429_response")
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining"} <= set(limited.headers)


# --- TrackingMore ---------------------------------------------------------------------------
TM_ITEM_KEYS = {
    "id", "tracking_number", "carrier_code", "status", "created_at", "updated_at", "order_create_time", "title",
    "order_id", "customer_name", "customer_email", "archived", "original_country", "destination_country",
    "itemTimeLength", "service_code", "origin_info", "destination_info", "lastEvent", "lastUpdateTime",
}


def test_trackingmore_get_example(sandbox, http):
    response = http.get(sandbox.base_url("trackingmore") + "/trackings/get",
                        params={"numbers": "RR050349575PH,RN210552627LT"},
                        headers={"Content-Type": "application/json", "Trackingmore-Api-Key": "sandbox-key"})
    assert response.status_code == 200
    answer = response.json()
    assert answer["meta"] == {"code": 200, "type": "Success", "message": "Success"}
    data = answer["data"]
    assert data["page"] == 1 and data["limit"] == 100 and data["total"] == "2"
    assert [item["tracking_number"] for item in data["items"]] == ["RR050349575PH", "RN210552627LT"]
    for item in data["items"]:
        assert set(item) >= TM_ITEM_KEYS
        assert item["created_at"].endswith("+08:00") and item["updated_at"].endswith("+08:00")
        for side in ("origin_info", "destination_info"):
            assert {"weblink", "phone", "carrier_code", "trackinfo"} <= set(item[side])
            for entry in item[side]["trackinfo"]:
                assert set(entry) == {"Date", "StatusDescription", "Details"}
                assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?$", entry["Date"])


# --- TrackFlow ------------------------------------------------------------------------------
def test_trackflow_track_example(sandbox, http, doc_example):
    response = http.get(sandbox.base_url("trackflow") + "/v2/track/1Z204E380338943508",
                        headers={"X-API-Key": "sandbox-key", "Accept": "application/json"})
    assert response.status_code == 200
    answer, documented = response.json(), doc_example("trackflow_track_response")
    assert set(answer) == set(documented)
    assert set(answer["carrier"]) == set(documented["carrier"]) and answer["carrier"]["code"] == "ups"
    assert set(answer["origin"]) == {"city", "country"} == set(answer["destination"])
    for event in answer["events"]:
        assert set(event) == set(documented["events"][0])
        assert ISO_Z.match(event["timestamp"])
    assert ISO_Z.match(answer["last_updated"])


def test_trackflow_batch_example(sandbox, http):
    body = {"shipments": [{"tracking_number": "1Z204E380338943508", "carrier": "ups"},
                          {"tracking_number": "449044304137821", "carrier": "fedex"}]}
    response = http.post(sandbox.base_url("trackflow") + "/v2/track/batch", json=body,
                         headers={"X-API-Key": "sandbox-key", "Content-Type": "application/json"})
    assert response.status_code == 200
    answer = response.json()
    assert answer["success"] is True and answer["count"] == 2
    assert [r["tracking_number"] for r in answer["results"]] == ["1Z204E380338943508", "449044304137821"]
    assert [r["carrier"]["code"] for r in answer["results"]] == ["ups", "fedex"]


def test_trackflow_carriers_and_webhooks(sandbox, http, doc_example):
    headers = {"X-API-Key": "sandbox-key"}
    carriers = http.get(sandbox.base_url("trackflow") + "/v2/carriers", headers=headers).json()
    documented = doc_example("trackflow_carriers_response")
    assert set(carriers) == set(documented) and carriers["count"] == len(carriers["carriers"])
    for carrier in carriers["carriers"]:
        assert set(carrier) == set(documented["carriers"][0])
    assert documented["carriers"][0] in carriers["carriers"]
    created = http.post(sandbox.base_url("trackflow") + "/v2/webhooks", headers=headers,
                        json={"tracking_number": "1Z204E380338943508", "url": "https://example.com/hook",
                              "events": ["delivered", "exception"]})
    assert created.status_code == 201
    hook = created.json()
    assert hook["id"].startswith("wh_") and hook["events"] == ["delivered", "exception"]
    deleted = http.delete(sandbox.base_url("trackflow") + f"/v2/webhooks/{hook['id']}", headers=headers)
    assert deleted.status_code == 204 and deleted.content == b""
    again = http.delete(sandbox.base_url("trackflow") + f"/v2/webhooks/{hook['id']}", headers=headers)
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


# --- parcelLab ------------------------------------------------------------------------------
PL_AUTH = {"Authorization": "Bearer sandbox-key", "Content-Type": "application/json", "Accept": "*/*"}


def _valid(put_body: dict) -> dict:
    """The doc's placeholders made valid ("text" is not an ISO code; the email was mangled)."""
    return {**put_body, "destination_country_iso3": "DEU", "language_iso2": "de",
            "recipient_email": "max@example.com"}


def test_parcellab_put_example_verbatim_is_rejected_field_by_field(sandbox, http, doc_example):
    response = http.put(sandbox.base_url("parcellab") + "/v4/track/orders/", headers=PL_AUTH,
                        json=doc_example("parcellab_put_request"))
    assert response.status_code == 400
    assert set(response.json()) == {"destination_country_iso3", "language_iso2", "recipient_email"}
    assert all(isinstance(v, list) and isinstance(v[0], str) for v in response.json().values())


def test_parcellab_put_post_get_examples(sandbox, http, doc_example):
    base = sandbox.base_url("parcellab") + "/v4/track/orders/"
    body = _valid(doc_example("parcellab_put_request"))
    first = http.put(base, headers=PL_AUTH, json=body)
    assert first.status_code == 201
    assert first.json() == {"order_number": "text", "external_reference": "text", "account": 1, "created": True}
    assert http.put(base, headers=PL_AUTH, json=body).status_code == 200
    conflict = http.post(base, headers=PL_AUTH, json=body)
    assert conflict.status_code == 400 and conflict.json() == {"detail": "Order already exists."}
    order = http.get(base + "text/", headers=PL_AUTH)
    assert order.status_code == 200
    documented = doc_example("parcellab_get_order_response")
    answer = order.json()
    assert set(documented) <= set(answer)
    tracking = answer["trackings"][0]
    assert tracking["tracking_number"] == "text" and tracking["courier"] == "text"
    assert set(documented["trackings"][0]) <= set(tracking)
    for checkpoint in tracking["checkpoints"]:
        assert set(checkpoint) == set(documented["trackings"][0]["checkpoints"][0])


def test_parcellab_payload_example(sandbox, http):
    """The "Payload" example (its JSON has missing/trailing commas in the doc; repaired here)."""
    article = {"line_item_id": "57", "sku": "AP-SH-TWC-2315", "article_name": "Trendy White Cotton Sneakers",
               "article_store_url": "https://weareparkers.com/products/trendy-white-cotton-sneakers",
               "size": "9", "color": "White", "quantity": 1}
    body = {
        "account": 1234567, "order_number": "PCL-1235", "reference": "REF-1234", "client_key": "1234",
        "destination_country_iso3": "DEU",
        "shipping_address": {"first_name": "Max", "last_name": "Mustermann", "address_line": "Kapellenweg 2",
                             "postal_code": "12345", "city": "Berlin", "country_iso3": "DEU", "region_code": "BY"},
        "delivery_method": "Standard", "recipient_email": "max@example.com", "recipient_name": "Max Mustermann",
        "articles_order": [article],
        "mutations": [{"type": "add_tracking",
                       "tracking": {"tracking_number": "PCLX-123123", "courier": "pclx", "articles": [article]}}],
    }
    base = sandbox.base_url("parcellab") + "/v4/track/orders/"
    assert http.post(base, headers=PL_AUTH, json=body).status_code == 201
    order = http.get(base + "PCL-1235/", headers=PL_AUTH).json()
    assert order["account"] == 1234567 and order["recipient_name"] == "Max Mustermann"
    assert [(t["tracking_number"], t["courier"]) for t in order["trackings"]] == [("PCLX-123123", "pclx")]


def test_parcellab_list_example(sandbox, http, doc_example):
    response = http.get(sandbox.base_url("parcellab") + "/v4/track/orders/", headers=PL_AUTH)
    assert response.status_code == 200
    answer, documented = response.json(), doc_example("parcellab_list_response")
    assert set(answer) == set(documented)
    assert set(answer["results"][0]) == set(documented["results"][0])
    assert answer["previous"] is None and answer["next"].startswith(sandbox.base_url("parcellab"))


# --- ShipEngine -----------------------------------------------------------------------------
def test_shipengine_tracking_example(sandbox, http, doc_example):
    response = http.get(sandbox.base_url("shipengine") + "/v1/tracking",
                        params={"carrier_code": "stamps_com", "tracking_number": "9405511899223197428490"},
                        headers={"API-Key": "sandbox-key"})
    assert response.status_code == 200
    answer, documented = response.json(), doc_example("shipengine_tracking_response")
    assert set(answer) == set(documented)
    assert answer["carrier_code"] == "usps" and answer["carrier_id"] == 1
    assert answer["tracking_url"] == documented["tracking_url"]
    assert answer["events"]
    for event in answer["events"]:
        assert set(event) == set(documented["events"][0])
