"""The push path end to end without Airflow processes: subscriptions registered through the hooks
against the sandbox, the sandbox POSTing signed deliveries over loopback to the receiver, the
warehouse and ``parcel_subscriptions`` updated, terminal parcels unsubscribed."""

from __future__ import annotations

import time

import requests
from webhook_support import TF_CONN, WP_CONN, rows

from airflow_provider_parcels.hooks.trackflow import TrackFlowHook
from airflow_provider_parcels.hooks.whereparcel import WhereParcelHook
from airflow_provider_parcels.operators.subscriptions import subscribe, subscription_store, unsubscribe_terminal
from airflow_provider_parcels.webhooks.subscriptions import ACTIVE, ENDED


def _scan(sandbox, number: str, status: str, api: str | None = None) -> dict:
    answer = requests.post(f"{sandbox.url}/_sandbox/scan", json={"tracking_number": number, "status": status,
                                                                  "api": api},
                           headers=sandbox.control_headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _endpoint_calls(sandbox, api: str, endpoint: str) -> int:
    return sandbox.stats()[api]["by_endpoint"].get(endpoint, 0)


def test_trackflow_subscribe_push_unsubscribe(receiver, push_conns, parcels_sandbox_clean, warehouse_conn_id):
    sandbox = parcels_sandbox_clean
    warehouse = push_conns(warehouse_conn_id)
    hook = TrackFlowHook(TF_CONN)
    store = subscription_store(hook)
    parcels = [{"carrier": "dhl", "tracking_number": "TRN1001"}, {"carrier": "dhl", "tracking_number": "TRN1002"}]

    first = subscribe(hook, store, parcels, receiver.url(TF_CONN), ("all",))
    again = subscribe(hook, store, parcels, receiver.url(TF_CONN), ("all",))
    assert first == {"subscribed": 2, "already": 0, "terminal": 0, "failed": 0}
    assert again == {"subscribed": 0, "already": 2, "terminal": 0, "failed": 0}
    assert _endpoint_calls(sandbox, "trackflow", "POST /v2/webhooks") == 2  # registering twice cost nothing more
    assert len(sandbox.app.pusher.subscriptions("trackflow")) == 2

    change = _scan(sandbox, "TRN1001", "exception")
    assert change["deliveries"] == 1
    assert sandbox.app.pusher.wait_idle(10)
    delivery = sandbox.app.pusher.snapshot()["deliveries"][-1]
    assert delivery["http_status"] == 200
    assert warehouse.status_counts() == {"exception": 1}
    deadline = time.monotonic() + 10  # noted in parcel_subscriptions right after the answer
    while (row := store.get("trackflow", [("dhl", "TRN1001")])[("dhl", "TRN1001")]).last_status is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert row.last_status == "exception" and row.last_event_at >= change["changed_at"]

    assert unsubscribe_terminal(hook, store) == 1
    assert [s["tracking_number"] for s in sandbox.app.pusher.subscriptions("trackflow")] == ["TRN1002"]
    states = {s.tracking_number: s.state for s in store.all("trackflow")}
    assert states == {"TRN1001": ENDED, "TRN1002": ACTIVE}
    # a parcel in a terminal status is not subscribed again
    assert subscribe(hook, store, parcels[:1], receiver.url(TF_CONN))["terminal"] == 1


def test_trackflow_events_filter_is_honoured(receiver, push_conns, parcels_sandbox_clean):
    sandbox = parcels_sandbox_clean
    warehouse = push_conns()
    hook = TrackFlowHook(TF_CONN)
    subscribe(hook, subscription_store(hook), [{"carrier": "dhl", "tracking_number": "TRN2001"}],
              receiver.url(TF_CONN), ("exception",))
    assert _scan(sandbox, "TRN2001", "out_for_delivery")["deliveries"] == 0
    assert _scan(sandbox, "TRN2001", "exception")["deliveries"] == 1
    assert sandbox.app.pusher.wait_idle(10)
    assert warehouse.status_counts() == {"exception": 1}


def test_whereparcel_recurring_push_with_token(receiver, push_conns, parcels_sandbox_clean):
    sandbox = parcels_sandbox_clean
    warehouse = push_conns()
    hook = WhereParcelHook(WP_CONN)
    store = subscription_store(hook)
    counts = subscribe(hook, store, [{"carrier": "de.dhl", "tracking_number": "TRN3001"}], receiver.url(WP_CONN))
    assert counts["subscribed"] == 1
    registered = sandbox.app.pusher.subscriptions("whereparcel")
    assert registered[0]["recurring"] is True and "token=" in registered[0]["url"]
    assert all("token" not in (s.url or "") for s in store.all())  # the secret is not stored in the table
    _scan(sandbox, "TRN3001", "exception", api="whereparcel")
    assert sandbox.app.pusher.wait_idle(10)
    assert sandbox.app.pusher.snapshot()["deliveries"][-1]["http_status"] == 200
    assert warehouse.status_counts() == {"exception": 1}


def test_redelivery_duplicates_reordering_and_forgeries_lose_nothing(receiver, push_conns, parcels_sandbox_clean,
                                                                      warehouse_conn_id):
    sandbox = parcels_sandbox_clean
    warehouse = push_conns(warehouse_conn_id)
    hook = TrackFlowHook(TF_CONN)
    numbers = [f"TRN40{i:02d}" for i in range(8)]
    subscribe(hook, subscription_store(hook), [{"carrier": "dhl", "tracking_number": n} for n in numbers],
              receiver.url(TF_CONN))
    answer = requests.post(f"{sandbox.url}/_sandbox/webhooks", headers=sandbox.control_headers, timeout=10,
                           json={"redeliver": 0.3, "duplicate": 0.3, "reorder": 0.8, "bad_signature": 0.3, "seed": 3})
    assert answer.status_code == 200, answer.text
    for status in ("out_for_delivery", "failed_attempt", "out_for_delivery"):
        for number in numbers:
            _scan(sandbox, number, status)
        time.sleep(1.1)  # carrier scans a second apart (events carry whole seconds)
    for number in numbers[:4]:
        _scan(sandbox, number, "delivered")
    assert sandbox.app.pusher.wait_idle(30)
    log = sandbox.app.pusher.snapshot()["deliveries"]
    kinds = {d["kind"] for d in log}
    assert {"redelivery", "duplicate", "forged"} <= kinds
    assert all(d["http_status"] == 401 for d in log if d["kind"] == "forged")
    assert all(d["http_status"] == 200 for d in log if d["kind"] != "forged")
    assert warehouse.status_counts() == {"delivered": 4, "out_for_delivery": 4}
    # one row per distinct event: the sandbox's own history of each parcel, no duplicates
    tracked = hook.track([{"carrier": "dhl", "tracking_number": n} for n in numbers])
    assert len(rows(warehouse, "parcel_tracking_events")) == sum(len(r.events) for r in tracked)
