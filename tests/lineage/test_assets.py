"""Issue 19: the warehouse tables as Airflow assets, with what changed as the events' extra (dag.test() against the
sandbox, into real SQLite and PostgreSQL, events read back from the metadata database)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
from helpers.dags import get_dag, run_dag, task_states, xcom_pull

from airflow_provider_parcels.lineage.assets import (
    database_table_uri,
    table_of_uri,
    warehouse_table_assets,
    warehouse_table_uri,
)
from airflow_provider_parcels.operators.tracking import TrackParcelsOperator

PARCELS_URI = "parcels://lineage_wh/lin_parcel_tracking"
EVENTS_URI = "parcels://lineage_wh/lin_parcel_tracking_events"


def parcels(n: int, carrier: str = "usps", tag: str = "LN") -> list[dict]:
    prefixes = ["DLV", "TRN", "EXC", "NFD", "OFD"]
    return [{"carrier": carrier, "tracking_number": f"{prefixes[i % 5]}{tag}{i:05d}"} for i in range(n)]


def asset_events(run: Any) -> list[tuple[str, int | None, dict]]:
    """``(uri, map_index, extra)`` of the asset events a DAG run recorded, in order."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent.source_map_index, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == run.dag_id, AssetEvent.source_run_id == run.run_id)
            .order_by(AssetEvent.id)
        ).all()
    return [(uri, map_index, dict(extra)) for uri, map_index, extra in rows]


def queued_consumers(uri: str) -> set[str]:
    """DAG ids the scheduler would run for events of ``uri`` (its asset DAG-run queue)."""
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return set(session.scalars(
            select(AssetDagRunQueue.target_dag_id).join(AssetModel, AssetModel.id == AssetDagRunQueue.asset_id)
            .where(AssetModel.uri == uri)
        ))


def unpause(dag_id: str) -> None:
    """Unpause a DAG of the bundle (new DAGs start paused; a paused consumer is not queued)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=False))


def table_rows(warehouse: dict, sql: str) -> list[tuple]:
    from airflow.sdk import BaseHook

    return [tuple(r) for r in BaseHook.get_connection("lineage_wh").get_hook().get_records(sql)]


def expected_table_uri(warehouse: dict, table: str) -> str:
    if warehouse["conn_type"] in ("sqlite", "duckdb"):
        return f"{warehouse['conn_type']}://{os.path.abspath(warehouse['host'])}/main/lin_{table}"
    return f"postgres://{warehouse['host']}:{warehouse['port']}/{warehouse['schema']}/public/lin_{table}"


# --- URIs (pure) ----------------------------------------------------------------------------------------------
def test_parse_time_uris_need_no_connection():
    # no connection named "nowhere" exists: building the assets looks nothing up
    tracking, events = warehouse_table_assets("nowhere", "wh_", "analytics")
    assert tracking.uri == tracking.name == "parcels://nowhere/analytics/wh_parcel_tracking"
    assert events.uri == "parcels://nowhere/analytics/wh_parcel_tracking_events"
    assert warehouse_table_uri("my wh") == "parcels://my%20wh/parcel_tracking"
    assert table_of_uri(events.uri) == "parcel_tracking_events" and table_of_uri("s3://x/y") is None
    with pytest.raises(ValueError, match="template"):
        warehouse_table_assets("{{ var.value.wh }}")
    with pytest.raises(ValueError, match="table must be one of"):
        warehouse_table_uri("wh", "orders")


def test_database_uris_follow_airflow_conventions(tmp_path):
    from airflow.sdk import Asset, Connection

    pg = Connection(conn_id="x", conn_type="postgres", host="db.internal", schema="wh", login="u")
    assert database_table_uri(pg, "parcel_tracking") == "postgres://db.internal:5432/wh/public/parcel_tracking"
    # the postgres provider's own normaliser accepts it unchanged
    assert Asset(database_table_uri(pg, "parcel_tracking", "p_", "s")).uri == "postgres://db.internal:5432/wh/s/p_parcel_tracking"
    lite = Connection(conn_id="y", conn_type="sqlite", host=str(tmp_path / "w.db"))
    assert database_table_uri(lite, "parcel_tracking_events") == f"sqlite://{tmp_path}/w.db/main/parcel_tracking_events"
    duck = Connection(conn_id="z", conn_type="duckdb", host=str(tmp_path / "w.duckdb"))
    assert database_table_uri(duck, "parcel_tracking", schema="raw") == f"duckdb://{tmp_path}/w.duckdb/raw/parcel_tracking"
    assert database_table_uri(Connection(conn_id="m", conn_type="sqlite", host=":memory:"), "parcel_tracking") is None


# --- declared outlets -------------------------------------------------------------------------------------------
def test_outlets_declared_at_parse_time():
    dag = get_dag("lineage_track")
    assert [o.uri for o in dag.get_task("track").outlets] == ["s3://reports/parcels_seen", PARCELS_URI, EVENTS_URI]
    # templated warehouse: nothing guessed; the user's own outlets stay
    assert [o.uri for o in get_dag("lineage_track_templated").get_task("track").outlets] == [PARCELS_URI, EVENTS_URI]
    templated = TrackParcelsOperator(task_id="t", conn_id="api", parcels=[], warehouse_conn_id="{{ params.wh }}")
    assert templated.outlets == []
    no_warehouse = TrackParcelsOperator(task_id="u", conn_id="api", parcels=[])
    assert no_warehouse.outlets == []
    # mapped: .partial() declares them too, so the scheduler knows them before any copy runs
    assert [o.uri for o in get_dag("lineage_track_mapped").get_task("track").outlets] == [PARCELS_URI, EVENTS_URI]
    # the consumer is scheduled on the table
    assert [a.uri for a in get_dag("lineage_consumer").timetable.asset_condition.objects] == [PARCELS_URI]


# --- recorded events --------------------------------------------------------------------------------------------
def test_events_say_what_changed(track_api, warehouse):
    track_api("shipengine")
    run_dag("lineage_track", conf={"parcels": []})  # syncs the bundle (and so the consumer) into the DB
    unpause("lineage_consumer")
    run = run_dag("lineage_track", conf={"parcels": parcels(20)})
    assert run.state == "success", task_states(run)
    events = {uri: extra for uri, _, extra in asset_events(run)}
    assert set(events) == {"s3://reports/parcels_seen", PARCELS_URI, EVENTS_URI}
    assert events["s3://reports/parcels_seen"] == {}  # the user's own outlet: recorded, no extra of ours

    stored = Counter(dict(table_rows(warehouse, "SELECT status, COUNT(*) FROM lin_parcel_tracking GROUP BY status")))
    errors = table_rows(warehouse, "SELECT COUNT(*) FROM lin_parcel_tracking WHERE error_code IS NOT NULL")[0][0]
    event_rows = table_rows(warehouse, "SELECT COUNT(*) FROM lin_parcel_tracking_events")[0][0]
    tracking = events[PARCELS_URI]
    assert tracking["table"] == "parcel_tracking" and tracking["provider"] == "shipengine"
    assert tracking["table_uri"] == expected_table_uri(warehouse, "parcel_tracking")
    assert (tracking["parcels"], tracking["inserted"], tracking["updated"], tracking["unchanged"]) == (20, 20, 0, 0)
    assert tracking["status_changes"] == dict(stored) and sum(stored.values()) == 20
    assert tracking["errors"] == errors > 0 and tracking["error_codes"] == {"not_found": errors}
    assert events[EVENTS_URI] == {"table": "parcel_tracking_events", "inserted": event_rows, "unchanged": 0,
                                  "table_uri": expected_table_uri(warehouse, "parcel_tracking_events")}
    assert xcom_pull(run, "track")["status_changes"] == dict(stored)
    # the consumer DAG is queued on the event (the scheduler would start it)
    assert "lineage_consumer" in queued_consumers(PARCELS_URI)

    # the same parcels again: nothing new, no status moved
    again = run_dag("lineage_track", conf={"parcels": parcels(20)})
    assert again.state == "success"
    second = {uri: extra for uri, _, extra in asset_events(again)}
    assert second[PARCELS_URI]["inserted"] == 0 and second[PARCELS_URI]["status_changes"] == {}
    assert second[PARCELS_URI]["updated"] + second[PARCELS_URI]["unchanged"] == 20
    assert second[EVENTS_URI]["inserted"] == 0 and second[EVENTS_URI]["unchanged"] == event_rows


def triggered_by(monkeypatch: pytest.MonkeyPatch, produced: Any, uri: str) -> None:
    """Make the next dag.test() run consume ``produced``'s events on ``uri``, as the scheduler links them to an
    asset-triggered run (dag.test() makes manual runs: the events are linked to the run it creates)."""
    import airflow.models.dagrun as dagrun_module
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    create = dagrun_module.get_or_create_dagrun

    def create_with_triggering_events(**kwargs: Any) -> Any:
        session = kwargs["session"]
        dag_run = create(**kwargs)
        dag_run.consumed_asset_events.extend(session.scalars(
            select(AssetEvent).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_run_id == produced.run_id, AssetModel.uri == uri)))
        session.commit()
        return dag_run

    monkeypatch.setattr(dagrun_module, "get_or_create_dagrun", create_with_triggering_events)


def test_a_consumer_reads_what_changed(track_api, warehouse, monkeypatch):
    track_api("shipengine")
    produced = run_dag("lineage_track", conf={"parcels": parcels(10, tag="CS")})
    assert produced.state == "success"
    triggered_by(monkeypatch, produced, PARCELS_URI)
    consumed = run_dag("lineage_consumer")
    assert consumed.state == "success", task_states(consumed)
    (seen,) = xcom_pull(consumed, "report")
    assert seen == {uri: extra for uri, _, extra in asset_events(produced)}[PARCELS_URI]
    assert seen["inserted"] == 10 and sum(seen["status_changes"].values()) == 10


def test_templated_warehouse_puts_extras_on_the_users_outlets(track_api, warehouse):
    track_api("trackflow")
    run = run_dag("lineage_track_templated", conf={"parcels": parcels(6, "ups"), "wh": "lineage_wh"})
    assert run.state == "success", task_states(run)
    events = {uri: extra for uri, _, extra in asset_events(run)}
    assert events[PARCELS_URI]["inserted"] == 6 and events[PARCELS_URI]["provider"] == "trackflow"
    assert events[EVENTS_URI]["inserted"] > 0


def test_mapped_copies_each_record_their_share(track_api, warehouse):
    track_api("whereparcel")
    run = run_dag("lineage_track_mapped", conf={"parcels": parcels(12, "kr.cj")})
    assert run.state == "success", task_states(run)
    events = [(uri, index, extra) for uri, index, extra in asset_events(run) if uri == PARCELS_URI]
    assert sorted(index for _, index, _ in events) == [0, 1, 2]
    assert sum(extra["inserted"] for _, _, extra in events) == 12
    assert sorted(extra["parcels"] for _, _, extra in events) == [2, 5, 5]


def test_sla_example_runs_on_the_table_and_only_reports(track_api, tmp_path, monkeypatch):
    """parcels_sla_alerts (example DAG) started by a parcel_tracking event: no wait, the late-parcel report only."""
    from helpers.connections import set_connection

    set_connection(monkeypatch, "parcels_demo_warehouse", "sqlite", host=str(tmp_path / "demo.db"))
    sla = get_dag("parcels_sla_alerts")
    assert [a.uri for a in sla.timetable.asset_condition.objects] == ["parcels://parcels_demo_warehouse/parcel_tracking"]
    assert type(sla.timetable).__name__ == "AssetOrTimeSchedule"
    assert sla.timetable.timetable.expression == "0 6 * * *"  # and still every morning
    track_api("shipengine")
    produced = run_dag("lineage_track_demo_wh", conf={"parcels": parcels(10, tag="SL")})
    assert produced.state == "success"
    triggered_by(monkeypatch, produced, "parcels://parcels_demo_warehouse/parcel_tracking")
    run = run_dag("parcels_sla_alerts")
    assert run.state == "success", task_states(run)
    assert task_states(run) == {"todays_parcels": "skipped", "wait_for_todays_parcels": "skipped",
                                "late_parcels_report": "success", "sla_breached": "skipped"}
    late = {row["tracking_number"] for row in xcom_pull(run, "late_parcels_report")}
    assert late and late <= {p["tracking_number"] for p in parcels(10, tag="SL")}
