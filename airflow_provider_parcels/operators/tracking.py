"""``TrackParcelsOperator``: bulk tracking through any of the five APIs, streamed into the warehouse."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowException
from airflow.sdk import BaseHook, BaseOperator

from airflow_provider_parcels.hooks import hook_for_connection
from airflow_provider_parcels.operators.summary import TrackingSummary

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_parcels.hooks.base import ParcelTrackingHook
    from airflow_provider_parcels.warehouse import ParcelWarehouse

#: Pass as ``parcels`` to track the warehouse's own open parcels (status not terminal), each once per run.
OPEN_PARCELS = "warehouse:open_parcels"


class TrackParcelsOperator(BaseOperator):
    """
    Track parcels through WhereParcel, TrackingMore, TrackFlow, parcelLab or ShipEngine (the
    hook follows the connection's type) and, when a warehouse is given, upsert the results
    into ``parcel_tracking`` and ``parcel_tracking_events`` chunk by chunk, so a million
    parcels never sit in memory. Every parcel handed in ends as a result row or an error row.

    :param conn_id: connection of one of the five tracking APIs.
    :param parcels: a list of dicts or ``Parcel``s (or an XComArg of one), a SQL query
        returning ``carrier``, ``tracking_number`` (and optional ``client_id``,
        ``postal_code``, ``phone_number``) columns run on ``source_conn_id`` (default: the
        warehouse), or ``OPEN_PARCELS`` for the warehouse's parcels not yet in a terminal
        status (each tracked once per run, even when its answer moves it to another open
        status while the run goes on). Templated.
    :param warehouse_conn_id: a common-sql connection (SQLite, PostgreSQL, DuckDB) to load
        into; ``None`` to only return the summary.
    :param source_conn_id: connection the ``parcels`` SQL query runs on.
    :param table_prefix: prefix of the two tables (identifiers only). Templated.
    :param schema: schema of the two tables. Templated.
    :param chunk_size: parcels tracked and loaded per chunk (one transaction each).
    :param quota_share: the fraction of the API quota this task may use; ``"auto"`` gives
        ``1 / max_active_tis_per_dagrun`` (or ``max_active_tis_per_dag``) so that mapped
        copies running at once stay under the plan's quota together.
    :param fail_on_errors: fail the task (after loading every row) when any parcel ended
        with an error, listing the first few.
    :param hook_kwargs: extra arguments for the hook (``requests_per_minute``,
        ``max_concurrency``, ``timeout``; TrackingMore ``register_missing``).
    """

    template_fields: Sequence[str] = ("parcels", "conn_id", "warehouse_conn_id", "table_prefix", "schema")
    template_fields_renderers = {"parcels": "sql"}
    ui_color = "#f4d58d"

    def __init__(
        self,
        *,
        conn_id: str,
        parcels: Any,
        warehouse_conn_id: str | None = None,
        source_conn_id: str | None = None,
        table_prefix: str = "",
        schema: str | None = None,
        chunk_size: int = 1000,
        quota_share: float | str | None = None,
        fail_on_errors: bool = False,
        hook_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.conn_id = conn_id
        self.parcels = parcels
        self.warehouse_conn_id = warehouse_conn_id
        self.source_conn_id = source_conn_id
        self.table_prefix = table_prefix
        self.schema = schema
        self.chunk_size = chunk_size
        self.quota_share = quota_share
        self.fail_on_errors = fail_on_errors
        self.hook_kwargs = hook_kwargs or {}

    def resolved_quota_share(self) -> float | None:
        """The quota share: explicit, or ``"auto"`` from the task's own concurrency limit."""
        if self.quota_share != "auto":
            return None if self.quota_share is None else float(self.quota_share)
        copies = self.max_active_tis_per_dagrun or self.max_active_tis_per_dag
        if not copies:
            self.log.warning("quota_share='auto' without max_active_tis_per_dagrun: using the whole quota")
            return None
        return 1.0 / copies

    def warehouse(self) -> ParcelWarehouse:
        from airflow_provider_parcels.warehouse import ParcelWarehouse

        if not self.warehouse_conn_id:
            raise AirflowException("parcels from the warehouse need warehouse_conn_id")
        return ParcelWarehouse(self.warehouse_conn_id, table_prefix=self.table_prefix, schema=self.schema)

    def hook(self) -> ParcelTrackingHook:
        return hook_for_connection(self.conn_id, quota_share=self.resolved_quota_share(), **self.hook_kwargs)

    def source(self, hook: ParcelTrackingHook) -> Iterable[Any]:
        """The parcels to track, as an iterable that is read lazily."""
        parcels = self.parcels
        if isinstance(parcels, str):
            if parcels.strip() == OPEN_PARCELS:
                return self.warehouse().open_parcels(provider=hook.provider)
            return self._query(parcels)
        if parcels is None:
            raise AirflowException("parcels is None: give a list, a SQL query or OPEN_PARCELS")
        return parcels

    def _query(self, sql: str) -> Iterator[dict[str, Any]]:
        conn_id = self.source_conn_id or self.warehouse_conn_id
        if not conn_id:
            raise AirflowException("a SQL query for parcels needs source_conn_id or warehouse_conn_id")
        db = BaseHook.get_connection(conn_id).get_hook()
        with db.get_conn() as conn:
            cursor = conn.cursor()
            cursor.execute(sql)
            names = [d[0].lower() for d in cursor.description]
            while rows := cursor.fetchmany(self.chunk_size):
                for row in rows:
                    yield dict(zip(names, row, strict=True))
            cursor.close()

    def execute(self, context: Context) -> dict[str, Any]:
        hook = self.hook()
        warehouse = self.warehouse() if self.warehouse_conn_id else None
        summary = TrackingSummary(hook.provider)
        counts = None
        results = hook.iter_track(self.source(hook), chunk_size=self.chunk_size)
        try:
            chunk_number = 0
            while chunk := list(islice(results, self.chunk_size)):
                chunk_number += 1
                summary.add(chunk)
                if warehouse is not None:
                    loaded = warehouse.load(chunk)
                    counts = loaded if counts is None else counts + loaded
                self.log.info(
                    "chunk %d: %d parcels (%d so far, %d errors)%s",
                    chunk_number, len(chunk), summary.parcels, summary.errors,
                    f"; rows {loaded.to_dict()}" if warehouse is not None else "",
                )
        finally:
            hook.close()
        out = summary.to_dict()
        out["api"] = hook.stats.as_dict()
        if warehouse is not None:
            out["tables"] = [warehouse.table_name(t) for t in ("parcel_tracking", "parcel_tracking_events")]
            out["rows"] = counts.to_dict() if counts is not None else {}
        if self.fail_on_errors and summary.errors:
            raise AirflowException(summary.failure_message())
        return out
