"""Hybrid sync: the scheduled tracking run polls only the open parcels push does not cover."""

from __future__ import annotations

import time

from webhook_support import TF_CONN

from airflow_provider_parcels.hooks.trackflow import TrackFlowHook
from airflow_provider_parcels.models import Parcel, ParcelStatus, TrackingResult
from airflow_provider_parcels.operators.subscriptions import SubscribeParcelsOperator, subscription_store
from airflow_provider_parcels.operators.tracking import OPEN_PARCELS_NOT_PUSHED, TrackParcelsOperator
from airflow_provider_parcels.webhooks.hybrid import open_parcels_not_pushed


def _open(number: str, status: ParcelStatus = ParcelStatus.IN_TRANSIT) -> TrackingResult:
    return TrackingResult(provider="trackflow", carrier="dhl", tracking_number=number, status=status)


def test_only_unpushed_or_silent_parcels_are_polled(push_conns, parcels_sandbox_clean, warehouse_conn_id):
    warehouse = push_conns(warehouse_conn_id)
    warehouse.load([_open("TRN5001"), _open("TRN5002"), _open("TRN5003"), _open("DLV5004", ParcelStatus.DELIVERED)])
    hook = TrackFlowHook(TF_CONN)
    store = subscription_store(hook)
    for number in ("TRN5001", "TRN5002"):
        store.record("trackflow", TF_CONN, "dhl", number, f"wh_{number}", "http://x/parcels/webhooks/tf", ("all",),
                     at=time.time() - 8 * 3600)
    store.touch([_open("TRN5001")], at=time.time() - 60)  # heard from a minute ago: live
    store.touch([_open("TRN5002")], at=time.time() - 7 * 3600)  # silent for 7 hours: the safety net polls it
    op = TrackParcelsOperator(task_id="sync", conn_id=TF_CONN, parcels=OPEN_PARCELS_NOT_PUSHED,
                              warehouse_conn_id=warehouse_conn_id, push_safety_net_hours=6)
    assert {p["tracking_number"] for p in op.source(op.hook())} == {"TRN5002", "TRN5003"}
    # the safety-net poll restarts TRN5002's silence clock: not polled again in the next hours
    assert {p["tracking_number"] for p in op.source(op.hook())} == {"TRN5003"}
    later = time.time() + 6 * 3600 + 60
    polled = {p["tracking_number"] for p in open_parcels_not_pushed(warehouse, "trackflow", 6 * 3600, now=later)}
    assert polled == {"TRN5001", "TRN5002", "TRN5003"}


def test_subscribe_operator_is_idempotent_and_counts(push_conns, parcels_sandbox_clean, receiver):
    push_conns()
    parcels = [Parcel("dhl", "TRN6001"), {"carrier": "dhl", "tracking_number": "TRN6002"}]
    op = SubscribeParcelsOperator(task_id="subscribe", parcels=parcels, conn_id=TF_CONN,
                                  webhook_base_url=f"http://127.0.0.1:{receiver.port}/")
    assert op.execute({}) == {"subscribed": 2, "already": 0, "terminal": 0, "failed": 0, "unsubscribed": 0}
    assert op.execute({}) == {"subscribed": 0, "already": 2, "terminal": 0, "failed": 0, "unsubscribed": 0}
    urls = {s["url"] for s in parcels_sandbox_clean.app.pusher.subscriptions("trackflow")}
    assert urls == {receiver.url(TF_CONN)}
    assert parcels_sandbox_clean.stats()["trackflow"]["by_endpoint"]["POST /v2/webhooks"] == 2
