"""
What a write changed in the warehouse tables, as the extras of the asset events the operators (and the webhook
ingest) record on their outlets.

The extra of ``parcel_tracking``::

    {"table": "parcel_tracking", "table_uri": "postgres://db:5432/wh/public/parcel_tracking",
     "provider": "shipengine", "parcels": 20, "inserted": 12, "updated": 5, "unchanged": 3,
     "status_changes": {"delivered": 4, "exception": 1}, "errors": 2, "error_codes": {"not_found": 2}}

and of ``parcel_tracking_events``: ``{"table", "table_uri", "inserted", "unchanged"}``. ``status_changes`` counts the
parcels whose stored status differs after the write from before it (a new parcel counts under its first status).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_parcels.lineage.assets import (
    WAREHOUSE_TABLES,
    database_table_uri,
    table_of_uri,
    warehouse_table_uri,
)

if TYPE_CHECKING:
    from airflow_provider_parcels.models import TrackingResult
    from airflow_provider_parcels.warehouse import LoadCounts, ParcelWarehouse

log = logging.getLogger(__name__)

#: Keys read per status query (three parameters each: under SQLite's oldest limit of 999).
STATUS_BATCH = 300

Key = tuple[str, str, str]


def result_keys(results: Iterable[TrackingResult]) -> list[Key]:
    """
    The distinct ``parcel_tracking`` keys ``(provider, carrier, tracking_number)`` of results, in order.

    :param results: tracking results about to be (or just) loaded.
    """
    return list(dict.fromkeys((r.provider, r.carrier, r.tracking_number) for r in results))


def read_statuses(warehouse: ParcelWarehouse, keys: Sequence[Key]) -> dict[Key, str]:
    """
    The stored status of each key that has a row (one short read per 300 keys, through the warehouse's own
    connection and dialect).

    :param warehouse: the warehouse (its tables must exist).
    :param keys: ``(provider, carrier, tracking_number)`` tuples.
    """
    found: dict[Key, str] = {}
    if not keys:
        return found
    placeholder = warehouse.dialect.placeholder
    table = warehouse.table_name("parcel_tracking")
    with warehouse.connect() as conn:
        for start in range(0, len(keys), STATUS_BATCH):
            batch = keys[start : start + STATUS_BATCH]
            one = f"({placeholder}, {placeholder}, {placeholder})"
            sql = (
                f"WITH v(p, c, n) AS (VALUES {', '.join([one] * len(batch))}) "
                f'SELECT t."provider", t."carrier", t."tracking_number", t."status" FROM v JOIN {table} AS t '
                'ON t."provider" = v.p AND t."carrier" = v.c AND t."tracking_number" = v.n'
            )
            for provider, carrier, number, status in warehouse.query(conn, sql, [x for key in batch for x in key]):
                found[(provider, carrier, number)] = status
    return found


def status_changes(before: Mapping[Key, str], after: Mapping[Key, str]) -> Counter:
    """
    Parcels whose status differs after a write, counted by their new status (new parcels included).

    :param before: status by key before the write.
    :param after: status by key after it.
    """
    return Counter(status for key, status in after.items() if before.get(key) != status)


@dataclass
class WarehouseChanges:
    """
    What one task run changed in the warehouse tables, built chunk by chunk.

    :param warehouse_conn_id: the (rendered) warehouse connection id.
    :param table_prefix: the (rendered) table prefix.
    :param schema: the (rendered) schema, or ``None``.
    """

    warehouse_conn_id: str
    table_prefix: str = ""
    schema: str | None = None
    counts: LoadCounts | None = None
    status_changes: Counter = field(default_factory=Counter)
    status_tracking: bool = True

    def add(self, counts: LoadCounts, changes: Mapping[str, int] | None = None) -> None:
        """
        Add one load.

        :param counts: the load's counts.
        :param changes: its status changes by new status, or ``None`` when they could not be read.
        """
        self.counts = counts if self.counts is None else self.counts + counts
        if changes is None:
            self.status_tracking = False
        else:
            self.status_changes.update(changes)

    def table_uri(self, table: str, conn: Any = None) -> str | None:
        """
        The table's URI in its database's convention (see :func:`~.assets.database_table_uri`).

        :param table: ``parcel_tracking`` or ``parcel_tracking_events``.
        :param conn: the warehouse ``Connection``; looked up when not given.
        """
        try:
            if conn is None:
                from airflow.sdk import BaseHook

                conn = BaseHook.get_connection(self.warehouse_conn_id)
            return database_table_uri(conn, table, self.table_prefix, self.schema)
        except Exception:  # a lineage detail must never fail the write that succeeded
            log.warning("could not build the database URI of %s", table, exc_info=True)
            return None

    def extras(
        self,
        provider: str | None = None,
        parcels: int | None = None,
        errors: int | None = None,
        error_codes: Mapping[str, int] | None = None,
        conn: Any = None,
    ) -> dict[str, dict[str, Any]]:
        """
        The asset event extra of each table, by table name (without prefix).

        :param provider: the API the rows came from.
        :param parcels: parcels handled.
        :param errors: parcels that ended with an error.
        :param error_codes: errors by code.
        :param conn: the warehouse ``Connection``, if the caller has it.
        """
        counts = self.counts.to_dict() if self.counts is not None else {}
        parcels_extra: dict[str, Any] = {
            "table": "parcel_tracking",
            "table_uri": self.table_uri("parcel_tracking", conn),
        }
        if provider is not None:
            parcels_extra["provider"] = provider
        if parcels is not None:
            parcels_extra["parcels"] = parcels
        parcels_extra.update(
            inserted=counts.get("inserted", 0), updated=counts.get("updated", 0), unchanged=counts.get("unchanged", 0)
        )
        parcels_extra["status_changes"] = dict(sorted(self.status_changes.items())) if self.status_tracking else None
        if errors is not None:
            parcels_extra["errors"] = errors
        if error_codes is not None:
            parcels_extra["error_codes"] = dict(sorted(error_codes.items()))
        events_extra = {
            "table": "parcel_tracking_events",
            "table_uri": self.table_uri("parcel_tracking_events", conn),
            "inserted": counts.get("events_inserted", 0),
            "unchanged": counts.get("events_unchanged", 0),
        }
        return {"parcel_tracking": parcels_extra, "parcel_tracking_events": events_extra}

    def attach(
        self, context: Mapping[str, Any], outlets: Iterable[Any], extras: Mapping[str, dict[str, Any]]
    ) -> list[str]:
        """
        Put each table's extra on the task's outlets that name it: the ``parcels://`` asset of the rendered conn id,
        prefix and schema, or the table's database URI (an outlet the user declared). Airflow records the events
        when the task succeeds.

        :param context: the task context (its ``outlet_events``).
        :param outlets: the task's outlets.
        :param extras: from :meth:`extras`.
        :return: the URIs of the outlets that got an extra.
        """
        wanted: dict[str, str] = {}
        for table in WAREHOUSE_TABLES:
            wanted[warehouse_table_uri(self.warehouse_conn_id, table, self.table_prefix, self.schema)] = table
            uri = extras.get(table, {}).get("table_uri")
            if uri:
                wanted[uri] = table
        attached = []
        outlet_events = context.get("outlet_events")
        for outlet in outlets:
            uri = getattr(outlet, "uri", None)
            table = wanted.get(uri) if uri else None
            if table is None or outlet_events is None:
                if uri and table_of_uri(uri) and table is None:
                    log.info("outlet %s names another warehouse than this run's; no extra attached", uri)
                continue
            outlet_events[outlet].extra.update(extras[table])
            attached.append(uri)
        return attached


__all__ = ["WarehouseChanges", "read_statuses", "result_keys", "status_changes"]
