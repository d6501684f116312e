"""The receiver over real HTTP (uvicorn on loopback) writing to real SQLite and PostgreSQL:
verification, size cap, unknown connections, idempotent redelivery and reordering."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import requests
from helpers.connections import set_connection
from webhook_support import TF_CONN, WP_CONN, WP_TOKEN, post, rows, shipment, signed


def test_signed_exception_lands_in_the_warehouse(receiver, push_conns, warehouse_conn_id):
    warehouse = push_conns(warehouse_conn_id)
    body, headers = signed(shipment("EXC0001", "exception"))
    answer = post(receiver.url(TF_CONN), body, headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "exception"
    assert warehouse.status_counts() == {"exception": 1}
    assert len(rows(warehouse, "parcel_tracking_events")) == 2


@pytest.mark.parametrize("case", ["wrong_secret", "missing", "tampered", "prefixed_wrong", "non_ascii"])
def test_bad_or_missing_signature_is_401_and_writes_nothing(receiver, push_conns, case):
    warehouse = push_conns()
    body, headers = signed(shipment())
    if case == "wrong_secret":
        body, headers = signed(shipment(), secret="not-the-secret")
    elif case == "missing":
        del headers["X-TrackFlow-Signature"]
    elif case == "tampered":
        body = body.replace(b"exception", b"delivered")
    elif case == "prefixed_wrong":
        headers["X-TrackFlow-Signature"] = "sha256=" + "0" * 64
    elif case == "non_ascii":
        headers["X-TrackFlow-Signature"] = "é" * 64
    answer = requests.post(receiver.url(TF_CONN), data=body, headers={k: v.encode() if k.startswith("X-") else v
                                                                       for k, v in headers.items()}, timeout=10)
    assert answer.status_code == 401
    assert "secret" not in answer.text.lower()
    assert rows(warehouse, "parcel_tracking") == []


def test_replayed_delivery_outside_the_window_is_401(receiver, push_conns):
    warehouse = push_conns()
    stale = shipment(updated=datetime.now(timezone.utc) - timedelta(days=2))
    answer = post(receiver.url(TF_CONN), *signed(stale))
    assert answer.status_code == 401
    assert rows(warehouse, "parcel_tracking") == []


def test_oversized_body_is_413(receiver, push_conns):
    warehouse = push_conns()
    huge = shipment()
    huge["padding"] = "x" * (receiver.receiver.max_body_bytes + 1)
    body, headers = signed(huge)
    assert post(receiver.url(TF_CONN), body, headers).status_code == 413

    def chunks():  # no Content-Length: the stream is cut off at the cap
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    answer = requests.post(receiver.url(TF_CONN), data=chunks(), headers=headers, timeout=10)
    assert answer.status_code == 413
    assert rows(warehouse, "parcel_tracking") == []


def test_unknown_or_non_pushing_connection_is_404(receiver, push_conns, monkeypatch):
    push_conns()
    body, headers = signed(shipment())
    assert post(receiver.url("no_such_connection"), body, headers).status_code == 404
    set_connection(monkeypatch, "se_conn", "shipengine", password="sandbox-key")
    assert post(receiver.url("se_conn"), body, headers).status_code == 404


def test_connection_without_secret_or_warehouse_is_503_not_200(receiver, monkeypatch, sqlite_conn_id):
    body, headers = signed(shipment())
    set_connection(monkeypatch, "tf_nosecret", "trackflow", password="k", extra={"warehouse_conn_id": sqlite_conn_id})
    assert post(receiver.url("tf_nosecret"), body, headers).status_code == 503
    set_connection(monkeypatch, "tf_nowh", "trackflow", password="k",
                   extra={"webhook_secret": "sandbox-webhook-secret"})
    assert post(receiver.url("tf_nowh"), body, headers).status_code == 503


def test_redelivery_and_duplicates_are_one_row(receiver, push_conns, warehouse_conn_id):
    warehouse = push_conns(warehouse_conn_id)
    body, headers = signed(shipment("EXC0002", "exception"))
    for _ in range(3):
        assert post(receiver.url(TF_CONN), body, headers).status_code == 200
    assert warehouse.status_counts() == {"exception": 1}
    assert len(rows(warehouse, "parcel_tracking_events")) == 2


def test_reordered_older_event_never_overwrites_newer(receiver, push_conns, warehouse_conn_id):
    warehouse = push_conns(warehouse_conn_id)
    now = datetime.now(timezone.utc)
    older = shipment("TRN0009", "in_transit", updated=now - timedelta(minutes=5))
    newer = shipment("TRN0009", "delivered", updated=now)
    assert post(receiver.url(TF_CONN), *signed(newer)).status_code == 200
    assert post(receiver.url(TF_CONN), *signed(older)).status_code == 200  # late: accepted, changes nothing
    assert warehouse.status_counts() == {"delivered": 1}
    assert len(rows(warehouse, "parcel_tracking_events")) == 2


def test_signed_body_without_a_shipment_is_400(receiver, push_conns):
    warehouse = push_conns()
    body, headers = signed({"last_updated": datetime.now(timezone.utc).isoformat(), "hello": 1})
    assert post(receiver.url(TF_CONN), body, headers).status_code == 400
    assert rows(warehouse, "parcel_tracking") == []


def test_whereparcel_token_in_url_or_header(receiver, push_conns, parcels_sandbox_clean):
    warehouse = push_conns()
    item = {"carrier": "de.dhl", "trackingNumber": "EXC0003", "success": True,
            "data": {"carrier": "de.dhl", "trackingNumber": "EXC0003", "status": "exception", "statusText": "Exception",
                     "events": [{"timestamp": "2026-02-05T14:30:00+09:00", "status": "exception",
                                 "description": "Damaged", "location": "Seoul"}]}}
    body = json.dumps({"event": "tracking.updated", "webhookId": "wh_1", "data": item}).encode()
    base = receiver.url(WP_CONN)
    assert post(base, body, {}).status_code == 401
    assert post(base + "?token=wrong", body, {}).status_code == 401
    assert rows(warehouse, "parcel_tracking") == []
    assert post(base + f"?token={WP_TOKEN}", body, {}).status_code == 200
    assert post(base, body, {"X-Parcels-Webhook-Token": WP_TOKEN}).status_code == 200
    assert warehouse.status_counts() == {"exception": 1}
