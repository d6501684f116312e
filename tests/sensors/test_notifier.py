"""ParcelReportNotifier and the Deadline Alert callbacks: report contents, webhook delivery, sources."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_parcels.models import ParcelStatus, TrackingEvent, TrackingResult
from airflow_provider_parcels.notifications.parcel_report import (
    ParcelReportNotifier,
    deadline_report_callback,
    deadline_report_sync_callback,
)
from airflow_provider_parcels.sensors.exceptions import ParcelStatusFailure, ParcelWaitTimeout

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=timezone.utc)
PARCELS = [
    # late: not delivered, 3 days past its ETA
    {"tracking_number": "LATE1", "carrier": "dhl", "status": "in_transit",
     "estimated_delivery": "2024-05-07T12:00:00+00:00", "last_event": "Departed hub",
     "last_event_at": "2024-05-06T08:00:00+00:00"},
    # failed
    {"tracking_number": "EXC1", "carrier": "ups", "status": "exception", "last_event": "Damaged"},
    # on time, and delivered late (delivered is never late): not reported
    {"tracking_number": "OK1", "carrier": "ups", "status": "in_transit",
     "estimated_delivery": "2024-05-12T12:00:00+00:00"},
    {"tracking_number": "DONE1", "carrier": "ups", "status": "delivered",
     "estimated_delivery": "2024-05-01T12:00:00+00:00"},
]


def test_webhook_receives_the_slack_json(webhook):
    notifier = ParcelReportNotifier(parcels=PARCELS, http_conn_id="parcels_test_webhook", now=NOW)
    notifier({"dag_run": None})

    (post,) = webhook
    assert post["path"] == "/hooks" and post["headers"]["Content-Type"] == "application/json"
    payload = post["json"]
    assert set(payload) == {"text", "blocks"}
    lines = payload["text"].splitlines()
    assert lines[0] == "Parcel report: 2 late or failed parcels"
    assert lines[1] == ("• LATE1 (dhl): in_transit, 3.0 d late - last: Departed hub (2024-05-06T08:00:00+00:00) "
                        "[past ETA]")
    assert lines[2] == "• EXC1 (ups): exception - last: Damaged [exception]"
    assert len(lines) == 3
    assert payload["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": lines[0]}}
    assert payload["blocks"][1]["text"]["text"] == "\n".join(lines[1:])


def test_nothing_late_logs_and_posts_nothing(webhook):
    notifier = ParcelReportNotifier(parcels=PARCELS[2:], http_conn_id="parcels_test_webhook", now=NOW)
    notifier({})
    assert webhook == []
    assert notifier.last_report.text() == "Parcel report: no late or failed parcels"


def test_failing_sensor_parcels_come_from_the_context_and_max_age_counts():
    failed = [{"tracking_number": "EXC9", "carrier": "ups", "status": "exception", "error": None}]
    report = ParcelReportNotifier(now=NOW).build_report({"exception": ParcelStatusFailure("x", failed)})
    assert [(e.tracking_number, e.reasons) for e in report.entries] == [("EXC9", ["fail_on_status", "exception"])]

    still_open = [{"tracking_number": "TRN9", "carrier": "ups", "status": "in_transit",
                   "last_event_at": (NOW - timedelta(days=9)).isoformat()}]
    notifier = ParcelReportNotifier(now=NOW, max_age=timedelta(days=7))
    (entry,) = notifier.build_report({"exception": ParcelWaitTimeout("x", still_open)}).entries
    assert entry.reasons == ["open_at_sensor_timeout", "older_than_max_age"] and entry.days_late == 2.0


def test_warehouse_late_parcels_are_reported(sqlite_conn_id):
    from airflow_provider_parcels.warehouse import ParcelWarehouse

    def result(number: str, status: ParcelStatus, eta_days: int) -> TrackingResult:
        event = TrackingEvent(NOW - timedelta(days=4), None, status, None, f"scan {number}", "Hub")
        return TrackingResult("trackflow", "dhl", number, status=status, events=(event,),
                              estimated_delivery=NOW + timedelta(days=eta_days), fetched_at=NOW)

    ParcelWarehouse(sqlite_conn_id, table_prefix="t_").load(
        [result("WLATE", ParcelStatus.IN_TRANSIT, -2), result("WOK", ParcelStatus.IN_TRANSIT, 2),
         result("WEXC", ParcelStatus.EXCEPTION, 2)]
    )
    notifier = ParcelReportNotifier(warehouse_conn_id=sqlite_conn_id, table_prefix="t_", now=NOW,
                                    parcels=[PARCELS[1]])
    report = notifier.build_report({})
    assert [e.tracking_number for e in report.entries] == ["WLATE", "WEXC", "EXC1"]  # latest, then carrier
    assert report.entries[0].days_late == 2.0 and report.entries[0].last_event == "scan WLATE"


def test_deadline_callbacks_post_async_and_sync(webhook):
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference, SyncCallback

    kwargs = {"parcels": PARCELS, "http_conn_id": "parcels_test_webhook", "now": NOW.isoformat(),
              "max_age": 86400, "title": "SLA missed"}
    context = {"dag_run": {"dag_id": "sla", "run_id": "r1"}, "deadline": {"deadline_time": "2024-05-10T12:00"}}
    output = asyncio.run(deadline_report_callback(context=context, **kwargs))
    # Text, not a dict: Airflow stores a callback's return value in a text column.
    assert isinstance(output, str)
    summary = json.loads(output)
    assert summary["count"] == 2
    assert summary["headline"] == "SLA missed: 2 late or failed parcels (dag sla, run r1, deadline 2024-05-10T12:00)"
    assert deadline_report_sync_callback(context=context, **kwargs) == output
    assert [post["json"]["text"].splitlines()[0] for post in webhook] == [summary["headline"]] * 2

    # Both are importable paths with JSON kwargs, as Deadline Alerts need them.
    for callback in (AsyncCallback(deadline_report_callback, kwargs=kwargs),
                     SyncCallback(deadline_report_sync_callback, kwargs=kwargs)):
        DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(hours=4), callback=callback)
        assert callback.serialize()["path"].startswith("airflow_provider_parcels.notifications.parcel_report.")


def test_bad_max_age_is_refused():
    with pytest.raises(ValueError, match="max_age"):
        ParcelReportNotifier(max_age="3 days")


def test_deadline_callback_output_is_stored_by_airflow(airflow_db):
    """What the triggerer does with a Deadline Alert: run the callback through Airflow's own
    ``CallbackTrigger`` and save its events on the ``callback`` row. A dict output made the
    database refuse the row (``type 'dict' is not supported``) and killed the triggerer."""
    from airflow.models.callback import Callback, CallbackState
    from airflow.sdk import AsyncCallback
    from airflow.triggers.callback import CallbackTrigger
    from airflow.utils.session import create_session

    kwargs = {"parcels": PARCELS, "now": NOW.isoformat(), "title": "Deadline missed", "use_context": False}
    definition = AsyncCallback(deadline_report_callback, kwargs=kwargs)

    async def events() -> list:
        trigger = CallbackTrigger(callback_path=definition.serialize()["path"], callback_kwargs=dict(kwargs))
        return [event async for event in trigger.run()]

    collected = asyncio.run(events())
    with create_session() as session:
        row = Callback.create_from_sdk_def(definition)
        session.add(row)
        session.flush()
        for event in collected:
            row.handle_event(event, session)
        session.flush()
        callback_id = row.id
    with create_session() as session:
        stored = session.get(Callback, callback_id)
        assert stored.state == CallbackState.SUCCESS
        assert json.loads(stored.output)["headline"] == "Deadline missed: 2 late or failed parcels"


def test_sync_deadline_callback_says_why_airflow_refused_it_a_connection(monkeypatch):
    """On an executor, Airflow 3.3's execution API refuses callbacks every connection
    (``AirflowSecretsBackendAccessDenied``, a ``PermissionError``): say so and what to use instead."""
    from airflow.sdk import BaseHook

    from airflow_provider_parcels.notifications.parcel_report import CallbackConnectionDenied

    def denied(conn_id: str, *args, **kwargs):
        raise PermissionError(f"Access denied for connection {conn_id!r} by Execution API")

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(lambda cls, conn_id, *a, **k: denied(conn_id)))
    with pytest.raises(CallbackConnectionDenied) as raised:
        deadline_report_sync_callback(parcels=PARCELS, http_conn_id="alerts_hook", now=NOW.isoformat())
    message = str(raised.value)
    assert "connection(s) http_conn_id='alerts_hook'" in message and "AsyncCallback(deadline_report_callback" in message
