"""
Push, not poll: subscribe parcels to webhooks once, and alert within seconds of a carrier's
exception scan.

What it shows
-------------
* ``parcels_push_subscribe`` (run it when new parcels ship): ``SubscribeParcelsOperator``
  registers a TrackFlow webhook (events ``all``) for each parcel that has none yet, pointing at
  the receiver the provider's plugin serves in the Airflow API server
  (``<webhook_base_url>/parcels/webhooks/<conn_id>``), keeps the ids in ``parcel_subscriptions``,
  and deletes the subscriptions of parcels that reached a terminal status. Registering twice
  costs nothing: a subscribed parcel is skipped.
* ``parcels_exception_alerts`` has no clock: it is scheduled on the *alert asset* of the
  warehouse (``webhook_alert_asset``). The receiver commits each verified delivery to the
  warehouse and then records an asset event on it when the parcel is in exception (or expired)
  or past its estimated delivery, so the scheduler starts this DAG seconds after the scan.
  ``ParcelReportNotifier`` reports the pushed parcels (log, and a Slack-compatible webhook when
  ``ALERT_CONN_ID`` names an ``http`` connection).

Run it with no setup (the sandbox pushes)
-----------------------------------------
Start the sandbox (``python -m airflow_provider_parcels.sandbox --port 8765``) and Airflow
(``airflow api-server``, ``scheduler``, ``dag-processor``), define the connection
``parcels_demo_trackflow`` with extras ``{"webhook_secret": "sandbox-webhook-secret",
"warehouse_conn_id": "parcels_demo_warehouse"}``, unpause ``parcels_exception_alerts``, trigger
``parcels_push_subscribe`` with ``webhook_base_url`` = your API server's URL, then make a carrier
scan: ``curl -X POST -H "X-Sandbox-Token: $PARCELS_SANDBOX_TOKEN" -d
'{"tracking_number": "TRN0500001", "status": "exception"}' http://127.0.0.1:8765/_sandbox/scan``.
See ``docs/webhooks.md``.

Point it at a real API and a real alert channel
-----------------------------------------------
* ``conn_id``: your TrackFlow connection (API key, ``plan``) with extras ``webhook_secret`` (from
  TrackFlow) and ``warehouse_conn_id``; for WhereParcel, a ``whereparcel`` connection with
  ``webhook_token`` (any long random string: it goes into the URL WhereParcel calls).
* ``webhook_base_url``: the public HTTPS URL of your API server or of the reverse proxy that
  exposes ``/parcels/webhooks/`` (see ``docs/webhooks.md``).
* ``WAREHOUSE_CONN_ID`` below: the connection the tracking connection's ``warehouse_conn_id``
  names (it names the asset this DAG schedules on); ``ALERT_CONN_ID``: your Slack webhook.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_parcels.notifications.parcel_report import ParcelReportNotifier
from airflow_provider_parcels.operators.subscriptions import SubscribeParcelsOperator
from airflow_provider_parcels.webhooks.assets import webhook_alert_asset

log = logging.getLogger(__name__)

#: The warehouse the tracking connection's extra ``warehouse_conn_id`` names.
WAREHOUSE_CONN_ID = "parcels_demo_warehouse"
#: An ``http`` connection (Slack incoming webhook); ``None`` reports to the task log only.
ALERT_CONN_ID: str | None = None
ALERTS = webhook_alert_asset(WAREHOUSE_CONN_ID)

with DAG(
    dag_id="parcels_push_subscribe",
    description="Subscribe parcels to TrackFlow webhooks (once each); unsubscribe delivered ones",
    doc_md=__doc__,
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    render_template_as_native_obj=True,
    params={
        "conn_id": Param("parcels_demo_trackflow", type="string"),
        "webhook_base_url": Param("http://127.0.0.1:8080", type="string",
                                  description="Public URL of the Airflow API server (or its reverse proxy)"),
        "tracking_numbers": Param(["TRN0500001", "TRN0500002", "TRN0500003"], type="array"),
        "carrier": Param("dhl", type="string"),
    },
    tags=["parcels", "example", "webhooks"],
):

    @task
    def parcels_to_subscribe(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        """The parcels of this run (in a real deployment: today's shipments from your orders table)."""
        assert params is not None
        return [{"carrier": params["carrier"], "tracking_number": n} for n in params["tracking_numbers"]]

    SubscribeParcelsOperator(
        task_id="subscribe",
        parcels=parcels_to_subscribe(),
        conn_id="{{ params.conn_id }}",
        webhook_base_url="{{ params.webhook_base_url }}",
        events=("all",),
    )


with DAG(
    dag_id="parcels_exception_alerts",
    description="Alert on pushed exception and late-delivery events within seconds",
    doc_md=__doc__,
    params={"conn_id": Param("parcels_demo_trackflow", type="string",
                             description="Only alert on pushes received for this connection (empty: all)")},
    schedule=[ALERTS],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    tags=["parcels", "example", "webhooks", "alerts"],
):

    @task
    def alert(**context: Any) -> list[dict[str, Any]]:
        """Report the parcels of the asset events that started this run."""
        only = context["params"].get("conn_id")
        parcels: list[dict[str, Any]] = []
        for events in context["triggering_asset_events"].values():
            for event in events:
                parcels.extend(p for p in (event.extra or {}).get("parcels") or []
                               if not only or p.get("conn_id") == only)
        log.info("pushed alert events for %d parcels", len(parcels))
        ParcelReportNotifier(parcels=parcels, title="Pushed parcel alerts", http_conn_id=ALERT_CONN_ID).notify(
            context)
        return [{k: p.get(k) for k in ("tracking_number", "status", "alert")} for p in parcels]

    alert()
