"""The example DAGs import cleanly, touch no network, database or connection at parse time, and
the orders file is what their docs promise."""

from __future__ import annotations

import re
import socket
import sqlite3
from collections import Counter

import pytest
from example_expectations import (
    EXAMPLE_DAGS,
    SHIPENGINE_STATUS,
    TERMINAL,
    late_by_sandbox,
    poll_rule,
    read_orders,
    rest,
    shipengine_status,
)

EXAMPLE_DAG_IDS = {"parcels_warehouse_sync", "parcels_order_push", "parcels_sla_alerts",
                   "trackingmore_incremental_sync", "parcels_push_subscribe", "parcels_exception_alerts"}


@pytest.fixture
def parse_guarded(monkeypatch: pytest.MonkeyPatch):
    """Parse a DAG folder with sockets, SQLite, PostgreSQL and connections refused: (DagBag, attempts)."""
    import os

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook

    touched: list[str] = []

    def refuse(what: str):
        def blocked(*args, **kwargs):
            touched.append(f"{what}{args[1:2] or args[:1]}")
            raise OSError(f"{what} at parse time")

        return blocked

    for name in [n for n in os.environ if n.startswith("AIRFLOW_CONN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))
    monkeypatch.setattr(sqlite3, "connect", refuse("sqlite3.connect"))
    monkeypatch.setattr(BaseHook, "get_connection", classmethod(refuse("BaseHook.get_connection")))
    try:
        import psycopg2

        monkeypatch.setattr(psycopg2, "connect", refuse("psycopg2.connect"))
    except ImportError:  # pragma: no cover - the postgres extra is not installed
        pass

    def parse(folder):
        return DagBag(dag_folder=str(folder), bundle_path=str(folder)), touched

    return parse


@pytest.fixture
def parsed(parse_guarded):
    """``example_dags/`` parsed under :func:`parse_guarded`."""
    return parse_guarded(EXAMPLE_DAGS)


def test_the_guard_sees_parse_time_io(parse_guarded, tmp_path):
    (tmp_path / "greedy_dag.py").write_text(
        "import socket, sqlite3\n"
        "from airflow.sdk import DAG, BaseHook\n"
        "for probe in (lambda: BaseHook.get_connection('x'), lambda: sqlite3.connect('/tmp/x.db'),\n"
        "              lambda: socket.create_connection(('127.0.0.1', 9))):\n"
        "    try:\n"
        "        probe()\n"
        "    except Exception:\n"
        "        pass\n"
        "dag = DAG('greedy', schedule=None)\n"
    )
    bag, touched = parse_guarded(tmp_path)
    assert set(bag.dags) == {"greedy"}
    assert [attempt.split("(")[0] for attempt in touched] == [
        "BaseHook.get_connection", "sqlite3.connect", "socket.create_connection"]


def test_example_dags_import_without_touching_network_db_or_connections(parsed):
    bag, touched = parsed
    assert bag.import_errors == {}
    assert set(bag.dags) == EXAMPLE_DAG_IDS
    assert touched == []


def test_every_example_dag_documents_itself_and_defaults_to_the_demo_connections(parsed):
    bag, _ = parsed
    for dag_id in EXAMPLE_DAG_IDS:
        dag = bag.dags[dag_id]
        assert re.search(r"Point it at (a )?real", dag.doc_md or ""), dag_id
        assert "Run it with no setup" in (dag.doc_md or ""), dag_id
        defaults = {name: dag.params[name] for name in dag.params if name.endswith("conn_id")}
        named = {value for value in defaults.values() if value}
        assert named and all(value.startswith("parcels_demo_") for value in named), (dag_id, defaults)
        assert "example" in dag.tags


def test_sla_dag_has_a_deferrable_failing_sensor_a_report_and_a_deadline(parsed):
    bag, _ = parsed
    dag = bag.dags["parcels_sla_alerts"]
    sensor = dag.get_task("wait_for_todays_parcels")
    assert sensor.deferrable is True
    assert "exception" in sensor.fail_on
    assert sensor.on_failure_callback
    assert dag.get_task("late_parcels_report").trigger_rule == "all_done"
    import airflow.sdk

    if hasattr(airflow.sdk, "DeadlineAlert"):
        assert dag.deadline, "a DAG-run Deadline Alert where Airflow offers it"


def test_warehouse_sync_fans_out_with_dynamic_task_mapping(parsed):
    bag, _ = parsed
    track = bag.dags["parcels_warehouse_sync"].get_task("track")
    assert type(track).__name__ == "MappedOperator"
    assert track.partial_kwargs["quota_share"] == "auto"


def test_orders_file_has_every_kind_of_sandbox_parcel():
    orders = read_orders()
    numbers = [row["tracking_number"] for row in orders]
    assert 40 <= len(orders) <= 60
    assert len(set(numbers)) == len(numbers)
    assert len({row["order_number"] for row in orders}) == len(orders)
    for number in numbers:
        assert poll_rule(number) or rest(number)[:3] in SHIPENGINE_STATUS, number
    first_look = Counter(shipengine_status(n, 1) for n in numbers)
    assert first_look["exception"] >= 3 and first_look["not_found"] >= 1 and first_look["delivered"] >= 5
    import datetime as dt

    late = late_by_sandbox(numbers, dt.datetime.now(dt.timezone.utc))
    late_not_exception = {n for n in late if shipengine_status(n, 1) not in TERMINAL}
    assert len(late_not_exception) >= 3, "a few parcels past their estimated delivery"
    same_day = [row["tracking_number"] for row in orders if row["delivery_promise"] == "same_day"]
    assert {poll_rule(n)[0] for n in same_day} == {"delivered", "exception"}
    assert any(n.upper().startswith("NEW") for n in numbers), "numbers TrackingMore does not know yet"
