"""``TrackParcelsOperator``: bulk tracking through any of the five APIs, streamed into the warehouse."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowException
from airflow.sdk import BaseHook, BaseOperator

from airflow_provider_parcels.hooks import hook_for_connection
from airflow_provider_parcels.lineage.assets import is_templated, warehouse_table_assets
from airflow_provider_parcels.lineage.events import WarehouseChanges, read_statuses, result_keys, status_changes
from airflow_provider_parcels.operators.summary import TrackingSummary

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_provider_parcels.hooks.base import ParcelTrackingHook
    from airflow_provider_parcels.models import TrackingResult
    from airflow_provider_parcels.warehouse import LoadCounts, ParcelWarehouse

#: Pass as ``parcels`` to track the warehouse's own open parcels (status not terminal), each once per run.
OPEN_PARCELS = "warehouse:open_parcels"
#: Like ``OPEN_PARCELS``, without the parcels whose webhook subscription is live (an event, or the
#: subscription, within ``push_safety_net_hours``): with push, polling is the safety net.
OPEN_PARCELS_NOT_PUSHED = "warehouse:open_parcels_not_pushed"


def _with_table_outlets(kwargs: dict[str, Any]) -> list[Any]:
    """
    The outlets of a tracking task: the user's, plus the assets of both warehouse tables when the warehouse is
    known at parse time (``warehouse_conn_id``, ``table_prefix`` and ``schema`` given and not templated).

    :param kwargs: the operator's arguments (``outlets``, ``warehouse_conn_id``, ``table_prefix``, ``schema``).
    """
    outlets = kwargs.get("outlets") or []
    outlets = list(outlets) if isinstance(outlets, (list, tuple)) else [outlets]
    conn_id, prefix, schema = kwargs.get("warehouse_conn_id"), kwargs.get("table_prefix", ""), kwargs.get("schema")
    if not isinstance(conn_id, str) or not conn_id or not isinstance(prefix, str):
        return outlets
    if any(is_templated(v) for v in (conn_id, prefix, schema)) or (schema is not None and not isinstance(schema, str)):
        return outlets
    try:
        tables = warehouse_table_assets(conn_id, prefix, schema)
    except ValueError:  # e.g. an invalid identifier: the operator reports it when it runs
        return outlets
    have = {getattr(o, "uri", None) for o in outlets}
    return outlets + [asset for asset in tables if asset.uri not in have]


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
    :param budget_reserve: fraction of the key's day and month budgets this task leaves for sensors and
        alerts (default 0: none kept back). When the run holds more parcels than the budget left allows,
        the task tracks first those never tracked, then those checked longest ago, then those whose
        estimated delivery is nearest (never one the warehouse has in a terminal status), and reports how
        many wait for the next budget (``quota.waiting_for_next_budget`` in the return value).
    :param push_safety_net_hours: with ``parcels=OPEN_PARCELS_NOT_PUSHED``, a subscribed parcel
        silent for longer than this is tracked anyway.

    **Assets.** With a warehouse known at parse time (``warehouse_conn_id``, ``table_prefix`` and
    ``schema`` not templated) the task declares both tables as outlets,
    ``parcels://<warehouse_conn_id>[/<schema>]/<prefix>parcel_tracking`` and ``..._events`` (see
    :func:`~airflow_provider_parcels.lineage.assets.warehouse_table_assets`), next to any ``outlets``
    of the user's, also in ``.partial(...).expand(...)``. Each event's extra says what changed:
    inserted, updated, unchanged, status changes by status, errors, and the table's URI in its
    database's convention (``postgres://host:port/database/schema/table``). With a templated
    warehouse, declare ``outlets=warehouse_table_assets(...)`` yourself: the extras go on them.
    The task also returns OpenLineage facets (with the ``openlineage`` extra installed).
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
        push_safety_net_hours: float = 24.0,
        budget_reserve: float = 0.0,
        **kwargs: Any,
    ) -> None:
        kwargs["outlets"] = _with_table_outlets(
            {**kwargs, "warehouse_conn_id": warehouse_conn_id, "table_prefix": table_prefix, "schema": schema}
        )
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
        self.push_safety_net_hours = push_safety_net_hours
        if not 0.0 <= budget_reserve < 1.0:
            raise ValueError(f"budget_reserve must be in [0, 1), got {budget_reserve}")
        self.budget_reserve = budget_reserve
        self._lineage: dict[str, Any] | None = None

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:  # type: ignore[override]
        """
        ``BaseOperator.partial``, with the warehouse tables' assets added to the outlets, as ``__init__`` does
        (a mapped task's outlets must be known at parse time too).

        :param kwargs: the partial arguments.
        """
        if kwargs.get("warehouse_conn_id"):
            kwargs["outlets"] = _with_table_outlets(kwargs)
        return super().partial(**kwargs)

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
            if parcels.strip() == OPEN_PARCELS_NOT_PUSHED:
                from airflow_provider_parcels.webhooks.hybrid import open_parcels_not_pushed

                return open_parcels_not_pushed(self.warehouse(), hook.provider, self.push_safety_net_hours * 3600)
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

    def _load(self, warehouse: ParcelWarehouse, chunk: list[TrackingResult], changes: WarehouseChanges) -> LoadCounts:
        """Load one chunk, reading its parcels' statuses before and after for the asset event's status changes."""
        keys = result_keys(chunk)
        before: dict[Any, str] | None = None
        if changes.status_tracking:
            try:
                warehouse.ensure_tables()
                before = read_statuses(warehouse, keys)
            except Exception as err:  # the load decides whether the warehouse works; this is a detail
                self.log.warning("could not read statuses before the load (no status_changes in the asset event): %s",
                                 err)
        loaded = warehouse.load(chunk)
        changed = None
        if before is not None:
            try:
                changed = status_changes(before, read_statuses(warehouse, keys))
            except Exception as err:
                self.log.warning("could not read statuses after the load (no status_changes in the asset event): %s",
                                 err)
        changes.add(loaded, changed)
        return loaded

    def _within_budget(self, hook: ParcelTrackingHook, warehouse: ParcelWarehouse | None,
                       source: Iterable[Any]) -> tuple[Iterable[Any], dict[str, Any]]:
        """
        The parcels to track within the key's day and month budgets (issue 17): all of them, streamed,
        when the key has no such budget; else at most what is left (minus ``budget_reserve``), the most
        needed first.

        :param hook: the tracking hook.
        :param warehouse: where to read when each parcel was last checked, if any.
        :param source: the run's parcels.
        :return: the parcels, and what to report (``waiting_for_next_budget``, ``skipped_terminal``).
        """
        from airflow_provider_parcels.quota.priority import (
            budget_left,
            parcel_capacity,
            prioritise,
            warehouse_lookup,
        )

        units = budget_left(hook.quota_status(), self.budget_reserve)
        if units is None:
            return source, {}
        capacity = parcel_capacity(units, hook.settings.batch_size, hook.quota_counts_parcels)
        items = (item.to_dict() if hasattr(item, "to_dict") and not isinstance(item, dict) else item
                 for item in (source.to_dict(orient="records") if hasattr(source, "columns") else source))
        chosen, waiting, terminal = prioritise(
            items, capacity, hook.provider, warehouse_lookup(warehouse) if warehouse is not None else None,
            self.chunk_size)
        if waiting:
            self.log.warning("the quota left (%g units, reserve %g) tracks %d parcels now; %d wait for the next "
                             "budget", units, self.budget_reserve, len(chosen), waiting)
        return chosen, {"waiting_for_next_budget": waiting, "skipped_terminal": terminal,
                        "budget_units_left": units}

    def _quota_report(self, hook: ParcelTrackingHook, budget: dict[str, Any]) -> dict[str, Any]:
        """The key's quota after the run, for the return value and the log."""
        try:
            report = hook.quota_status().as_dict()
        except Exception as err:  # the store answers for itself; the report is a courtesy
            report = {"error": str(err)}
        report.update(budget)
        self.log.info("%s%s", hook.quota_summary(),
                      f"; {budget['waiting_for_next_budget']} parcels wait for the next budget" if budget else "")
        return report

    def execute(self, context: Context) -> dict[str, Any]:
        hook = self.hook()
        warehouse = self.warehouse() if self.warehouse_conn_id else None
        changes = (
            WarehouseChanges(self.warehouse_conn_id, self.table_prefix, self.schema)
            if warehouse is not None and self.warehouse_conn_id
            else None
        )
        summary = TrackingSummary(hook.provider)
        counts = None
        source, budget = self._within_budget(hook, warehouse, self.source(hook))
        results = hook.iter_track(source, chunk_size=self.chunk_size)
        try:
            chunk_number = 0
            while chunk := list(islice(results, self.chunk_size)):
                chunk_number += 1
                summary.add(chunk)
                if warehouse is not None and changes is not None:
                    loaded = self._load(warehouse, chunk, changes)
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
        out["quota"] = self._quota_report(hook, budget)
        if warehouse is not None:
            out["tables"] = [warehouse.table_name(t) for t in ("parcel_tracking", "parcel_tracking_events")]
            out["rows"] = counts.to_dict() if counts is not None else {}
        if changes is not None:
            extras = changes.extras(hook.provider, summary.parcels, summary.errors, summary.error_codes)
            attached = changes.attach(context, self.outlets, extras)
            out["status_changes"] = extras["parcel_tracking"]["status_changes"]
            self.log.info("asset events on %s", ", ".join(attached) or "no outlet (templated warehouse?)")
        self._lineage = {
            "base_url": hook.settings.base_url,
            "provider": hook.provider,
            "parcels": self.parcels if isinstance(self.parcels, str) else None,
            "rows": None if counts is None else {
                "parcel_tracking": counts.inserted + counts.updated,
                "parcel_tracking_events": counts.events_inserted,
            },
        }
        if self.fail_on_errors and summary.errors:
            raise AirflowException(summary.failure_message())
        return out

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """
        OpenLineage facets of the finished run (called by the OpenLineage listener; needs the ``openlineage``
        extra): the API as input, the SQL query's source tables (or the warehouse table itself for
        ``OPEN_PARCELS``) as inputs, and the two tables as outputs with their schema and the rows written
        (``parcel_tracking``: inserted + updated; events: inserted).

        :param task_instance: the task instance (unused; the facts come from this run's ``execute``).
        """
        from airflow_provider_parcels.lineage import openlineage as ol

        state = self._lineage or {}
        inputs: list[Any] = []
        outputs: list[Any] = []
        if state.get("base_url"):
            inputs.append(ol.api_dataset(state["base_url"], ol.TRACKING_PATHS.get(state["provider"], "/")))
        sql = state.get("parcels")
        if self.warehouse_conn_id:
            conn = BaseHook.get_connection(self.warehouse_conn_id)
            if sql is not None and sql.strip() == OPEN_PARCELS:
                inputs += ol.warehouse_datasets(conn, self.table_prefix, self.schema, tables=["parcel_tracking"],
                                                output=False)
            if state.get("rows") is not None:
                outputs += ol.warehouse_datasets(conn, self.table_prefix, self.schema, rows=state["rows"])
        if sql is not None and sql.strip() != OPEN_PARCELS:
            source = self.source_conn_id or self.warehouse_conn_id
            if source:
                try:
                    inputs += ol.sql_input_datasets(sql, BaseHook.get_connection(source))
                except Exception:
                    self.log.warning("could not parse the parcels query for lineage", exc_info=True)
        return ol.operator_lineage(inputs, outputs)
