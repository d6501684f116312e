"""
Asset events for accepted webhook deliveries, created by the receiver itself inside the Airflow
API server (it has the metadata database at hand), so a DAG scheduled on the asset is queued by
the scheduler's next loop: no trigger polls anything.

Two assets per warehouse (see :func:`webhook_alert_asset` and
:func:`airflow_provider_parcels.lineage.assets.warehouse_table_assets`):

* the ``parcel_tracking`` table asset gets an event for every batch of accepted deliveries;
* the *alert* asset gets one only when a delivery is an exception (or expired) or a parcel is past
  its estimated delivery without being delivered: the example DAG ``parcels_exception_alerts``
  schedules on it.

Events are batched: deliveries accepted within ``flush_interval`` seconds share one asset event
whose extra lists the parcels. An asset event is emitted after the warehouse commit; a crash in
between loses the event, not the row (the next delivery or the safety-net sync catches up).
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import Asset

from airflow_provider_parcels.models import ParcelStatus, TrackingResult

log = logging.getLogger(__name__)

ALERT_SCHEME = "parcels-alerts"
_ALERT_STATUSES = {ParcelStatus.EXCEPTION, ParcelStatus.EXPIRED}


def webhook_alert_asset(warehouse_conn_id: str, table_prefix: str = "", schema: str | None = None) -> Asset:
    """
    The asset that exception and late-delivery events reach: ``parcels-alerts://<warehouse>/<schema>/<prefix>``.

    :param warehouse_conn_id: the warehouse connection named by the tracking connection's extras.
    :param table_prefix: its ``table_prefix``.
    :param schema: its ``schema``.
    """
    from urllib.parse import quote

    path = "/".join(quote(part, safe="") for part in (schema, f"{table_prefix}parcel_tracking") if part)
    uri = f"{ALERT_SCHEME}://{quote(warehouse_conn_id, safe='-._~')}/{path}"
    return Asset(name=uri, uri=uri, group="parcels")


def is_alert(result: TrackingResult, now: datetime | None = None) -> str | None:
    """
    Why a delivery is an alert: ``exception`` (also expired) or ``late``; None when it is not.

    :param result: the parsed delivery.
    :param now: the time to compare the estimated delivery with (default now).
    """
    if result.status in _ALERT_STATUSES:
        return "exception"
    now = now or datetime.now(timezone.utc)
    eta = result.estimated_delivery
    if eta is not None and result.status is not ParcelStatus.DELIVERED and eta.tzinfo is not None and eta < now:
        return "late"
    return None


def _summary(result: TrackingResult, reason: str | None) -> dict[str, Any]:
    last = result.last_event
    return {
        "provider": result.provider,
        "carrier": result.carrier,
        "tracking_number": result.tracking_number,
        "status": str(result.status),
        "provider_status": result.provider_status,
        "estimated_delivery": result.estimated_delivery.isoformat() if result.estimated_delivery else None,
        "last_event_at": last.occurred_at.isoformat() if last is not None and last.occurred_at else None,
        "alert": reason,
    }


class AssetEventEmitter:
    """
    Collects accepted deliveries and records them as asset events from a background thread.

    :param flush_interval: seconds deliveries are gathered into one event.
    :param max_parcels_per_event: parcels listed in one event's extra at most.
    """

    def __init__(self, flush_interval: float = 0.2, max_parcels_per_event: int = 500) -> None:
        self.flush_interval = flush_interval
        self.max_parcels_per_event = max_parcels_per_event
        self._queue: queue.Queue[tuple[tuple[str, str, str | None], str, TrackingResult]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.emitted = 0

    def __call__(self, endpoint: Any, results: list[TrackingResult]) -> None:
        """
        Queue the deliveries of one request (the receiver's ``on_accepted``).

        :param endpoint: the receiver's endpoint (its warehouse names the assets).
        :param results: the committed results.
        """
        warehouse = endpoint.warehouse
        where = (warehouse.conn_id, warehouse.table_prefix, warehouse.schema)
        for result in results:
            self._queue.put((where, endpoint.conn_id, result))
        self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="parcels-webhook-assets", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            deadline = threading.Event()
            deadline.wait(self.flush_interval)
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.flush(batch)
            except Exception:
                log.warning("could not record asset events for %d webhook deliveries", len(batch), exc_info=True)

    def flush(self, batch: list[tuple[tuple[str, str, str | None], str, TrackingResult]]) -> int:
        """
        Record one event per asset for a batch of deliveries.

        :param batch: ``((warehouse_conn_id, table_prefix, schema), conn_id, result)`` items.
        :return: asset events recorded.
        """
        from airflow_provider_parcels.lineage.assets import warehouse_table_asset

        grouped: dict[tuple[str, str, str | None], list[tuple[str, TrackingResult]]] = {}
        for where, conn_id, result in batch:
            grouped.setdefault(where, []).append((conn_id, result))
        events: list[tuple[Asset, dict[str, Any]]] = []
        for (wh, prefix, schema), items in grouped.items():
            parcels = [_summary(r, is_alert(r)) | {"conn_id": c} for c, r in items][: self.max_parcels_per_event]
            extra = {"source": "webhook", "parcels": parcels, "count": len(items)}
            events.append((warehouse_table_asset(wh, "parcel_tracking", prefix, schema), extra))
            alerts = [p for p in parcels if p["alert"]]
            if alerts:
                events.append((webhook_alert_asset(wh, prefix, schema),
                               {"source": "webhook", "parcels": alerts, "count": len(alerts)}))
        recorded = record_asset_events(events)
        self.emitted += recorded
        return recorded


def record_asset_events(events: list[tuple[Asset, dict[str, Any]]]) -> int:
    """
    Record asset events in Airflow's metadata database (API server or scheduler process), as the
    REST API's ``POST /assets/events`` does; assets no DAG refers to are skipped.

    :param events: ``(asset, extra)`` pairs.
    :return: events recorded.
    """
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    recorded = 0
    with create_session() as session:
        for asset, extra in events:
            model = session.scalar(select(AssetModel).where(AssetModel.uri == asset.uri, AssetModel.active.has())
                                   .limit(1))
            if model is None:
                log.debug("asset %s is not used by any DAG; no event recorded", asset.uri)
                continue
            if asset_manager.register_asset_change(asset=model, extra=extra, source_is_api=True,
                                                   session=session) is not None:
                recorded += 1
    return recorded
