"""Each example DAG runs with ``dag.test()`` against the sandbox and a SQLite warehouse, and its
tables, API calls and alerts hold what the orders file and the sandbox's scheme imply."""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import urllib.request
from collections import Counter
from pathlib import Path

from example_expectations import (
    ORDERS_FILE,
    TERMINAL,
    late_by_sandbox,
    read_orders,
    shipengine_status,
    simulate_wait,
    status_counts,
)

SYNC, PUSH, SLA, TM = ("parcels_warehouse_sync", "parcels_order_push", "parcels_sla_alerts",
                       "trackingmore_incremental_sync")
CHUNK = 20  # the sync DAG's default chunk_size
SLA_CONF = {"poke_interval_seconds": 0.2, "alert_conn_id": "parcels_demo_alerts"}


def rows(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def requests_to(sandbox, api: str) -> int:
    return sandbox.stats()[api]["requests"]


def test_warehouse_sync_seeds_from_the_orders_file_then_tracks_only_open_parcels(dag_runner, example_env):
    orders = read_orders()
    numbers = [row["tracking_number"] for row in orders]
    sandbox, db = example_env.sandbox, example_env.warehouse

    first = dag_runner.run(SYNC, example_env.env)
    mapped = math.ceil(len(numbers) / CHUNK)
    assert first["state"] == "success", first["tasks"]
    assert set(first["tasks"]) == {"select_parcels", "summarize"} | {f"track[{i}]" for i in range(mapped)}
    assert set(first["tasks"].values()) == {"success"}
    # every parcel of the file landed once, with the status its prefix asks for (first lookup)
    assert dict(rows(db, "SELECT status, count(*) FROM parcel_tracking GROUP BY 1")) == status_counts(numbers, 1)
    assert dict(rows(db, "SELECT tracking_number, client_id FROM parcel_tracking")) == {
        row["tracking_number"]: row["order_number"] for row in orders}
    not_found = [n for n in numbers if shipengine_status(n, 1) == "not_found"]
    assert sorted(n for (n,) in rows(db, "SELECT tracking_number FROM parcel_tracking WHERE error_code = 'not_found'")
                  ) == sorted(not_found)
    assert rows(db, "SELECT count(*) FROM parcel_tracking_events")[0][0] > len(numbers)
    assert first["xcom"]["summarize"]["tracked"] == len(numbers)
    assert first["xcom"]["summarize"]["errors"] == len(not_found)
    assert requests_to(sandbox, "shipengine") == len(numbers)  # ShipEngine: one parcel per call

    # the next hour: only the parcels not in a terminal status are asked about again
    still_open = [n for n in numbers if shipengine_status(n, 1) not in TERMINAL]
    events_before = rows(db, "SELECT count(*) FROM parcel_tracking_events")[0][0]
    second = dag_runner.run(SYNC, example_env.env)
    assert second["state"] == "success", second["tasks"]
    assert requests_to(sandbox, "shipengine") == len(numbers) + len(still_open)
    assert second["xcom"]["summarize"]["tracked"] == len(still_open)
    looked_up_twice = {n: 2 if n in still_open else 1 for n in numbers}
    want = Counter(shipengine_status(n, looked_up_twice[n]) for n in numbers)
    assert dict(rows(db, "SELECT status, count(*) FROM parcel_tracking GROUP BY 1")) == dict(want)
    assert rows(db, "SELECT count(*) FROM parcel_tracking")[0][0] == len(numbers)
    # the POLLD1 parcels were delivered at their second lookup: one new event each, nothing else new
    newly_delivered = [n for n in still_open if shipengine_status(n, 2) != shipengine_status(n, 1)]
    assert rows(db, "SELECT count(*) FROM parcel_tracking_events")[0][0] == events_before + len(newly_delivered)


def test_warehouse_sync_with_nothing_open_skips_tracking(dag_runner, example_env, tmp_path):
    delivered = [row for row in read_orders() if row["tracking_number"].startswith("DLV")][:3]
    orders_file = tmp_path / "orders.csv"
    header = ORDERS_FILE.read_text().splitlines()[0]
    orders_file.write_text(header + "\n" + "\n".join(",".join(row.values()) for row in delivered) + "\n")
    conf = {"orders_file": str(orders_file), "table_prefix": "dlv_"}

    first = dag_runner.run(SYNC, example_env.env, conf=conf)
    assert first["state"] == "success"
    assert rows(example_env.warehouse, "SELECT status, count(*) FROM dlv_parcel_tracking GROUP BY 1") == [
        ("delivered", 3)]
    second = dag_runner.run(SYNC, example_env.env, conf=conf)
    assert second["state"] == "success", second["tasks"]
    assert second["xcom"]["select_parcels"] == []
    assert second["tasks"]["summarize"] == "success"
    assert second["xcom"]["summarize"]["tracked"] == 0
    assert requests_to(example_env.sandbox, "shipengine") == 3


def test_order_push_upserts_parcellab_orders_and_registers_new_trackingmore_parcels(dag_runner, example_env):
    orders = read_orders()
    unknown_to_trackingmore = [r for r in orders if r["tracking_number"].upper().startswith("NEW")]
    sandbox = example_env.sandbox

    first = dag_runner.run(PUSH, example_env.env)
    assert first["state"] == "success", first["tasks"]
    upsert, register = first["xcom"]["upsert_parcellab_orders"], first["xcom"]["register_trackingmore"]
    assert (upsert["total"], upsert["created"], upsert["failed"]) == (len(orders), len(orders), 0)
    # the sandbox account tracks every number already, except the NEW... ones
    assert (register["created"], register["unchanged"], register["failed"]) == (
        len(unknown_to_trackingmore), len(orders) - len(unknown_to_trackingmore), 0)
    stats = sandbox.stats()
    assert stats["parcellab"]["by_endpoint"] == {"PUT /v4/track/orders/": len(orders)}
    assert stats["trackingmore"]["by_endpoint"] == {"POST /trackings/batch": math.ceil(len(orders) / 40)}
    assert rows(example_env.warehouse, "SELECT count(*) FROM parcel_order_push_log")[0][0] == len(orders)
    # the order is in parcelLab, with its parcel attached
    sample = orders[0]
    request = urllib.request.Request(f"{sandbox.base_url('parcellab')}/v4/track/orders/{sample['order_number']}/",
                                     headers={"Authorization": "Bearer sandbox-key"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        order = json.load(answer)
    assert order["recipient_email"] == sample["recipient_email"]
    assert [t["tracking_number"] for t in order["trackings"]] == [sample["tracking_number"]]

    # the next day: the push log holds every order, so nothing is sent again
    second = dag_runner.run(PUSH, example_env.env)
    assert second["state"] == "success", second["tasks"]
    assert second["xcom"]["new_orders"] == []
    assert second["xcom"]["record_pushed"] == 0
    assert sandbox.stats()["parcellab"]["by_endpoint"]["PUT /v4/track/orders/"] == len(orders)


def test_sla_alerts_defer_fail_on_exception_parcels_alert_and_report_late_ones(dag_runner, example_env):
    orders = read_orders()
    numbers = [row["tracking_number"] for row in orders]
    same_day = [row["tracking_number"] for row in orders if row["delivery_promise"] == "same_day"]
    sandbox = example_env.sandbox
    assert dag_runner.run(SYNC, example_env.env)["state"] == "success"  # fills the warehouse (1 lookup each)
    before = requests_to(sandbox, "shipengine")

    run = dag_runner.run(SLA, example_env.env, conf=SLA_CONF)

    assert run["tasks"] == {"todays_parcels": "success", "wait_for_todays_parcels": "failed",
                            "late_parcels_report": "success", "sla_breached": "failed"}
    assert run["state"] == "failed"
    asked, failing = simulate_wait(same_day, lookups_before=1)
    assert failing and all(n.startswith("POLLX") for n in failing)
    # first check on the worker, then the trigger asked only about the parcels still open
    assert requests_to(sandbox, "shipengine") - before == asked
    assert asked < 2 * len(same_day)
    failed = run["failed_parcels"]["wait_for_todays_parcels"]
    assert {(p["tracking_number"], p["status"]) for p in failed} == {(n, "exception") for n in failing}
    # the notifier posted exactly those parcels to the webhook
    (alert,) = example_env.alerts
    text = alert["json"]["text"]
    assert text.startswith(f"Same-day parcels in exception: {len(failing)} late or failed parcel")
    assert {n for n in numbers if n in text} == failing
    # the report listed the warehouse's late parcels: exceptions and parcels past their ETA
    report = run["xcom"]["late_parcels_report"]
    assert {r["tracking_number"] for r in report} == late_by_sandbox(numbers, dt.datetime.now(dt.timezone.utc))
    assert {r["tracking_number"] for r in report if "exception" in r["reasons"]} == {
        n for n in numbers if shipengine_status(n, 1) == "exception"}


def test_sla_alerts_succeed_when_every_parcel_is_delivered(dag_runner, example_env, tmp_path):
    orders_file = tmp_path / "orders.csv"
    orders_file.write_text("order_number,carrier,tracking_number,delivery_promise\n"
                           "A-1,ups,POLLD1-000001,same_day\nA-2,usps,DLV-000002,same_day\nA-3,ups,TRN-3,standard\n")
    run = dag_runner.run(SLA, example_env.env, conf={**SLA_CONF, "orders_file": str(orders_file)})
    assert run["state"] == "success", run["tasks"]
    assert run["tasks"]["wait_for_todays_parcels"] == "success"
    assert run["tasks"]["sla_breached"] == "skipped"
    assert {r["tracking_number"]: r["status"] for r in run["xcom"]["wait_for_todays_parcels"]} == {
        "POLLD1-000001": "delivered", "DLV-000002": "delivered"}
    assert example_env.alerts == []


def _all_trackingmore_trackings(sandbox) -> list[dict]:
    """Every tracking of the sandbox account, straight from the API (the test's oracle)."""
    request = urllib.request.Request(f"{sandbox.base_url('trackingmore')}/trackings/get?page=1&limit=2000",
                                     headers={"Trackingmore-Api-Key": "sandbox-key"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)["data"]["items"]


def _updated(item: dict) -> int:
    return int(dt.datetime.fromisoformat(item["updated_at"]).timestamp())


def test_trackingmore_incremental_sync_loads_only_the_interval(dag_runner, example_env):
    sandbox, db = example_env.sandbox, example_env.warehouse
    trackings = _all_trackingmore_trackings(sandbox)
    assert len(trackings) == 60
    listed_before = sandbox.stats()["trackingmore"]["requests"]
    # an hour that holds the 10th most recent change: the run after it covers exactly that hour
    changed = dt.datetime.fromtimestamp(sorted(map(_updated, trackings))[-10], tz=dt.timezone.utc)
    hour = changed.replace(minute=0, second=0, microsecond=0)
    logical_date = (hour + dt.timedelta(hours=1, minutes=5)).isoformat()

    run = dag_runner.run(TM, example_env.env, logical_date=logical_date)
    assert run["state"] == "success", run["tasks"]
    low, high = int(hour.timestamp()), int(hour.timestamp()) + 3600 - 1
    want = {t["tracking_number"] for t in trackings if low <= _updated(t) <= high}
    assert want, "the chosen hour holds a change"
    result = run["xcom"]["sync_changed_trackings"]
    assert (result["update_time_min"], result["update_time_max"]) == (low, high)
    assert {n for (n,) in rows(db, "SELECT tracking_number FROM parcel_tracking WHERE provider = 'trackingmore'")
            } == want
    # one request per page of changes, never one per tracking
    assert sandbox.stats()["trackingmore"]["requests"] - listed_before == 1

    # a first load over three days, then the same run again: same rows (idempotent upserts)
    conf = {"window_hours": 72}
    first_load = dag_runner.run(TM, example_env.env, conf=conf, logical_date=logical_date)
    end = low + 3600
    want = {t["tracking_number"] for t in trackings if end - 72 * 3600 <= _updated(t) <= end - 1}
    loaded = rows(db, "SELECT tracking_number, status FROM parcel_tracking WHERE provider = 'trackingmore'")
    assert {n for n, _ in loaded} == want
    assert first_load["xcom"]["sync_changed_trackings"]["trackings"] == len(want)
    again = dag_runner.run(TM, example_env.env, conf=conf, logical_date=logical_date)
    assert again["xcom"]["sync_changed_trackings"]["rows"]["inserted"] == 0
    assert rows(db, "SELECT tracking_number, status FROM parcel_tracking WHERE provider = 'trackingmore'") == loaded


def test_sla_alerts_and_order_push_read_a_real_source_with_sql(dag_runner, example_env):
    """``source_sql`` instead of the orders file: a table in the warehouse, Jinja rendered per run."""
    db = example_env.warehouse
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE shipments (order_number TEXT, order_date TEXT, carrier TEXT, tracking_number TEXT, "
                     "recipient_name TEXT, recipient_email TEXT, postal_code TEXT, country_iso3 TEXT, "
                     "order_total TEXT, currency TEXT, promised_date TEXT)")
        today = dt.datetime.now(dt.timezone.utc).date().isoformat()
        conn.executemany("INSERT INTO shipments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            ("SQL-1", today, "ups", "DLV-SQL-0001", "A B", "a.b@example.com", "10001", "USA", "10.00", "USD", today),
            ("SQL-2", today, "usps", "NEWTRN-SQL-0002", "C D", "c.d@example.com", "10001", "USA", "5.50", "USD",
             "2000-01-01"),
        ])
    sla = dag_runner.run(SLA, example_env.env, conf={
        **SLA_CONF, "source_conn_id": "parcels_demo_warehouse",
        "source_sql": "SELECT carrier, tracking_number FROM shipments WHERE promised_date = '{{ ds }}'"})
    assert sla["state"] == "success", sla["tasks"]
    assert sla["xcom"]["todays_parcels"] == [{"carrier": "ups", "tracking_number": "DLV-SQL-0001"}]

    push = dag_runner.run(PUSH, example_env.env, conf={
        "source_conn_id": "parcels_demo_warehouse",
        "source_sql": "SELECT * FROM shipments WHERE order_date <= '{{ ds }}' ORDER BY order_number"})
    assert push["state"] == "success", push["tasks"]
    assert [r["order_number"] for r in push["xcom"]["new_orders"]] == ["SQL-1", "SQL-2"]
    assert push["xcom"]["upsert_parcellab_orders"]["created"] == 2
    assert push["xcom"]["register_trackingmore"]["created"] == 1  # only the NEW... number was unknown
