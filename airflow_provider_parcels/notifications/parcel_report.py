"""
Alerting on late or failed parcels: a notifier for task/DAG callbacks and Deadline Alert callbacks.

The report goes to the log and, with ``http_conn_id``, to a webhook as Slack-compatible JSON.
Sending is delegated to providers-http's ``HttpNotifier`` (sync and async); this module only
gathers the parcels and writes the report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.http.notifications import HttpNotifier
from airflow.sdk import BaseNotifier
from airflow.sdk.exceptions import AirflowSensorTimeout

from airflow_provider_parcels.notifications.report import (
    REASON_FAIL_ON,
    REASON_OPEN_AT_TIMEOUT,
    ParcelReport,
    ReportEntry,
    as_entries,
    as_utc,
    coerce_max_age,
    describe_context,
    entry_from,
    late_entries,
    load_items,
    merge_entries,
)
from airflow_provider_parcels.sensors.exceptions import FAILED_XCOM_KEY


class ParcelReportNotifier(BaseNotifier):
    """
    Report late or failed parcels to the log and, optionally, to a Slack-compatible webhook.

    Parcels come from up to three sources, merged by ``(carrier, tracking_number)``:

    - the callback context (``use_context``): the parcels of a failing ``ParcelStatusSensor``
      (``context["exception"].parcels``: the ``fail_on`` parcels, or the open ones at a timeout;
      else its XCom ``failed_parcels``), all reported;
    - ``parcels``: an explicit list (compact sensor results, tracking results or dicts with
      ``status``, ``estimated_delivery``...), of which only the late or failed are reported;
    - the warehouse (``warehouse_conn_id``): ``ParcelWarehouse.late_parcels(now, max_age)``.

    "Late" means: in exception; not delivered and past ``estimated_delivery``; or, with
    ``max_age``, not terminal and first seen longer ago than ``max_age``. Each line gives the
    number, carrier, status, days late, last event and why it is listed.

    :param parcels: an explicit list of parcels to check (or JSON text); templated.
    :param use_context: take the failing sensor's parcels from the callback context.
    :param warehouse_conn_id: a common-sql connection holding the warehouse tables.
    :param table_prefix: the warehouse tables' prefix.
    :param warehouse_schema: the warehouse tables' schema (PostgreSQL, DuckDB).
    :param provider: only this API's parcels from the warehouse.
    :param max_age: the longest a parcel may travel (``timedelta`` or seconds); ``None`` skips the rule.
    :param http_conn_id: an ``http`` connection of the webhook (host = the URL, or its base);
        ``None`` reports to the log only.
    :param endpoint: path appended to the connection's URL (e.g. Slack's ``services/T/B/X``).
    :param headers: extra HTTP headers.
    :param title: the report's first words.
    :param max_lines: parcels named before ``... and N more``.
    :param send_when_empty: post to the webhook even when nothing is late.
    :param now: the reference time (default: now, UTC); a datetime or ISO text.
    :param context: Airflow context for ``await notifier`` (see ``BaseNotifier``).
    """

    template_fields = ("parcels", "http_conn_id", "endpoint", "title", "warehouse_conn_id", "table_prefix")

    def __init__(
        self,
        *,
        parcels: Any = None,
        use_context: bool = True,
        warehouse_conn_id: str | None = None,
        table_prefix: str = "",
        warehouse_schema: str | None = None,
        provider: str | None = None,
        max_age: timedelta | float | None = None,
        http_conn_id: str | None = None,
        endpoint: str | None = None,
        headers: Mapping[str, str] | None = None,
        title: str = "Parcel report",
        max_lines: int = 25,
        send_when_empty: bool = False,
        now: datetime | str | None = None,
        context: Any = None,
    ) -> None:
        super().__init__(context=context)
        self.parcels = parcels
        self.use_context = use_context
        self.warehouse_conn_id = warehouse_conn_id
        self.table_prefix = table_prefix
        self.warehouse_schema = warehouse_schema
        self.provider = provider
        self.max_age = coerce_max_age(max_age)
        self.http_conn_id = http_conn_id
        self.endpoint = endpoint
        self.headers = dict(headers or {})
        self.title = title
        self.max_lines = max_lines
        self.send_when_empty = send_when_empty
        self.now = now
        self.last_report: ParcelReport | None = None

    # ------------------------------------------------------------------ gathering

    def reference_time(self) -> datetime:
        return as_utc(self.now) or datetime.now(timezone.utc)

    def context_entries(self, context: Mapping[str, Any], now: datetime) -> list[ReportEntry]:
        """The failing sensor's parcels, from the exception or else from its XCom."""
        if not self.use_context:
            return []
        error = context.get("exception")
        parcels = getattr(error, "parcels", None)
        if parcels is not None:
            reason = REASON_OPEN_AT_TIMEOUT if isinstance(error, AirflowSensorTimeout) else REASON_FAIL_ON
            return as_entries(parcels, reason, now, self.max_age)
        ti = context.get("ti") or context.get("task_instance")
        if ti is None or not hasattr(ti, "xcom_pull"):
            return []
        try:
            pulled = ti.xcom_pull(task_ids=ti.task_id, key=FAILED_XCOM_KEY)
        except Exception as err:  # a DAG-level callback may have no XCom access
            self.log.debug("No failed parcels in XCom: %s", err)
            return []
        return as_entries(load_items(pulled), REASON_FAIL_ON, now, self.max_age) if pulled else []

    def warehouse_rows(self, now: datetime) -> list[dict[str, Any]]:
        """Late parcels from the warehouse tables (none without ``warehouse_conn_id``)."""
        if not self.warehouse_conn_id:
            return []
        from airflow_provider_parcels.warehouse import ParcelWarehouse

        warehouse = ParcelWarehouse(self.warehouse_conn_id, table_prefix=self.table_prefix,
                                    schema=self.warehouse_schema)
        return warehouse.late_parcels(now=now, max_age=self.max_age, provider=self.provider)

    def build_report(
        self, context: Mapping[str, Any], warehouse_rows: list[dict[str, Any]] | None = None
    ) -> ParcelReport:
        """The report for ``context`` (reads the warehouse unless its rows are given)."""
        now = self.reference_time()
        if warehouse_rows is None:
            warehouse_rows = self.warehouse_rows(now)
        entries = merge_entries(
            [
                self.context_entries(context, now),
                late_entries(load_items(self.parcels), now, self.max_age),
                [entry_from(row) for row in warehouse_rows],
            ]
        )
        self.last_report = ParcelReport(self.title, entries, describe_context(context), self.max_lines)
        return self.last_report

    # ------------------------------------------------------------------ delivering

    def webhook(self, report: ParcelReport) -> HttpNotifier | None:
        """The providers-http notifier that posts ``report``, or ``None`` when nothing is to be sent."""
        if not self.http_conn_id or (not report.entries and not self.send_when_empty):
            return None
        return HttpNotifier(
            http_conn_id=self.http_conn_id,
            endpoint=self.endpoint,
            method="POST",
            json=report.slack_payload(),
            headers={"Content-Type": "application/json", **self.headers},
        )

    def log_report(self, report: ParcelReport) -> None:
        """Write the report to the log: a warning when parcels are listed, else an info line."""
        if report.entries:
            self.log.warning("%s", report.text())
        else:
            self.log.info("%s", report.text())

    def notify(self, context: Any) -> None:
        """Build the report, log it, and post it to the webhook (sync: task and DAG callbacks)."""
        report = self.build_report(context)
        self.log_report(report)
        webhook = self.webhook(report)
        if webhook is not None:
            webhook.notify(context)
            self.log.info("Parcel report sent through connection %r", self.http_conn_id)

    async def async_notify(self, context: Any) -> None:
        """The async twin of :meth:`notify` (triggerer: Deadline Alerts); the warehouse read runs in a thread."""
        from asgiref.sync import sync_to_async

        rows = await sync_to_async(self.warehouse_rows)(self.reference_time())
        report = self.build_report(context, warehouse_rows=rows)
        self.log_report(report)
        webhook = self.webhook(report)
        if webhook is not None:
            await webhook.async_notify(context)
            self.log.info("Parcel report sent through connection %r", self.http_conn_id)


def callback_output(report: ParcelReport) -> str:
    """
    What a Deadline Alert callback returns: the report's summary as JSON *text*.

    Airflow stores a callback's return value as is in the ``output`` text column of its
    ``callback`` table; a dict there makes the database driver refuse the row and the
    triggerer's loop die (every deferred task then waits for ever). Text always fits.

    :param report: the report the callback sent.
    """
    return json.dumps(report.summary(), default=str, sort_keys=True)


async def deadline_report_callback(context: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
    """
    A Deadline Alert callback (``AsyncCallback``, runs in the triggerer): post the parcel report.

    Use it as ``AsyncCallback(deadline_report_callback, kwargs={...})``; ``kwargs`` (JSON values)
    are those of :class:`ParcelReportNotifier`, e.g. ``warehouse_conn_id``, ``max_age`` (seconds),
    ``http_conn_id``, ``parcels``.

    :param context: what Airflow passes: the DAG run and the deadline.
    :param kwargs: :class:`ParcelReportNotifier` arguments.
    :return: the report's summary (count, headline, first parcels) as JSON text, which Airflow
        keeps as the callback's output (see :func:`callback_output`).
    """
    notifier = ParcelReportNotifier(**kwargs)
    await notifier.async_notify(dict(context or {}))
    assert notifier.last_report is not None
    return callback_output(notifier.last_report)


class CallbackConnectionDenied(PermissionError):
    """Airflow refused a Deadline Alert callback on an executor access to a connection."""


def deadline_report_sync_callback(context: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
    """
    The same as :func:`deadline_report_callback` for a ``SyncCallback`` (runs on an executor).

    Airflow 3.3's execution API lets only tasks read connections: an executor callback is
    refused (``AirflowSecretsBackendAccessDenied``) for ``http_conn_id`` and
    ``warehouse_conn_id``. Without them (``parcels`` only, report to the log) it works; with
    them use :func:`deadline_report_callback` in an ``AsyncCallback`` (the triggerer may read
    connections).

    :param context: what Airflow passes: the DAG run and the deadline.
    :param kwargs: :class:`ParcelReportNotifier` arguments.
    :return: the report's summary as JSON text (see :func:`callback_output`).
    :raises CallbackConnectionDenied: Airflow refused this callback a connection it names.
    """
    notifier = ParcelReportNotifier(**kwargs)
    try:
        notifier.notify(dict(context or {}))
    except PermissionError as err:
        named = [f"{key}={kwargs[key]!r}" for key in ("warehouse_conn_id", "http_conn_id") if kwargs.get(key)]
        raise CallbackConnectionDenied(
            f"Airflow refused this executor callback (SyncCallback) the connection(s) {', '.join(named)}: "
            f"{err}. Airflow lets only tasks and the triggerer read connections; use "
            "AsyncCallback(deadline_report_callback, kwargs=...) for a report that posts to a webhook "
            "or reads the warehouse."
        ) from err
    assert notifier.last_report is not None
    return callback_output(notifier.last_report)
