"""Order creation operators in a real DAG against the sandbox."""

from __future__ import annotations

import pytest
from helpers.dags import run_dag, xcom_pull


@pytest.fixture
def order_conns(parcels_sandbox_clean, monkeypatch):
    for api, conn_id, extra in (("parcellab", "orders_parcellab", {"account": 99}),
                                ("trackingmore", "orders_trackingmore", {"requests_per_minute": 6000})):
        name, value = parcels_sandbox_clean.conn_env(api, conn_id=conn_id, **extra)
        monkeypatch.setenv(name, value)
    return parcels_sandbox_clean


def xcom(run, task_id):
    return xcom_pull(run, task_id)


ORDERS = [
    {"order_number": "PCL-OP-1", "recipient_email": "a@example.com"},
    {"order_number": "PCL-OP-2", "recipient_email": "_unset", "order_total_amount": "19.90"},
    {"order_number": "PCL-OP-3", "recipient_email": "not-an-email"},
    {"order_number": "PCL-OP-4", "recipient_email": "d@example.com", "destination_country_iso3": "DE"},
]
PARCELS = [{"carrier": "usps", "tracking_number": "NEWOP0001"}, {"carrier": "usps", "tracking_number": "DLVOP0002"},
           {"carrier": "usps", "tracking_number": "x y"}]


def test_orders_created_once_updated_on_rerun_bad_orders_named(order_conns):
    first = run_dag("operators_orders", conf={"orders": ORDERS, "parcels": PARCELS})
    assert first.state == "success"
    summary = xcom(first, "orders")
    assert (summary["created"], summary["updated"], summary["failed"]) == (2, 0, 2)
    messages = " ".join(f["message"] for f in summary["first_failures"])
    assert "PCL-OP-3" in messages and "recipient_email" in messages
    assert "PCL-OP-4" in messages and "destination_country_iso3" in messages
    trackings = xcom(first, "trackings")
    # NEW... is created; DLV... counts as registered already (4016, unchanged); "x y" is invalid input
    assert (trackings["created"], trackings["unchanged"], trackings["failed"]) == (1, 1, 1)

    second = run_dag("operators_orders", conf={"orders": ORDERS, "parcels": PARCELS})
    assert second.state == "success"
    again = xcom(second, "orders")
    assert (again["created"], again["updated"]) == (0, 2)
    assert xcom(second, "trackings")["unchanged"] == 2


def test_fail_on_errors_fails_after_sending_the_valid_orders(order_conns):
    run = run_dag("operators_orders_strict", conf={"orders": ORDERS})
    assert run.state == "failed"
    stats = order_conns.stats()["parcellab"]
    assert stats["status_counts"].get("201") == 2 or stats["status_counts"].get(201) == 2
