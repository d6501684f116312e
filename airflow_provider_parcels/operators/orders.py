"""Operators that create things at the APIs: parcelLab orders and TrackingMore trackings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowException
from airflow.sdk import BaseOperator

from airflow_provider_parcels.hooks.parcellab import ParcelLabHook
from airflow_provider_parcels.hooks.parcellab_orders import InvalidOrderError, order_key, validate_order
from airflow_provider_parcels.hooks.trackingmore import TrackingMoreHook
from airflow_provider_parcels.operators.summary import CreateSummary

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context


def _records(value: Any) -> list[Any]:
    if hasattr(value, "to_dict") and hasattr(value, "columns"):
        return value.to_dict(orient="records")
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or hasattr(value, "keys"):
        raise AirflowException(f"expected a list of records, got a single {type(value).__name__}")
    return list(value)


class _ApiWriteLineage:
    """
    OpenLineage facets of an operator that writes records to an API (no warehouse table: no asset outlets): the
    API resource as the output dataset, with the records created or updated as its row count. The resource is named
    as the tracking operator names its input, so lineage links the order push to the tracking that reads it.
    """

    #: The resource written, as the tracking operator's input dataset names it.
    lineage_provider: str = ""
    _lineage: dict[str, Any] | None = None

    def _remember_lineage(self, base_url: str, out: dict[str, Any]) -> None:
        written = out.get("created", 0) + out.get("updated", 0) + out.get("created_or_updated", 0)
        self._lineage = {"base_url": base_url, "rows": written}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """
        OpenLineage facets of the finished run (needs the ``openlineage`` extra): the API resource as output.

        :param task_instance: the task instance (unused).
        """
        from airflow_provider_parcels.lineage import openlineage as ol

        state = self._lineage or {}
        outputs = []
        if state.get("base_url"):
            path = ol.TRACKING_PATHS[self.lineage_provider]
            outputs.append(ol.api_dataset(state["base_url"], path, output=True, rows=state.get("rows")))
        return ol.operator_lineage([], outputs)


class CreateParcelLabOrdersOperator(_ApiWriteLineage, BaseOperator):
    """
    Create or update orders in parcelLab with the idempotent ``PUT /v4/track/orders/``: a
    retried task never creates an order twice. Each order is checked against the doc's
    required fields and formats first; a bad order is reported by name and not sent. The
    summary counts ``created``, ``updated``, ``created_or_updated`` (a PUT retried after a
    timeout or a 5xx answered 200: the failed attempt may have created the order) and
    ``failed``.

    :param orders: order dicts, an XComArg of them, or a pandas DataFrame. Templated.
    :param conn_id: a parcelLab connection (its extra ``account`` fills in missing accounts).
    :param fail_on_errors: fail the task, after sending every valid order, when any order
        failed; the message lists the first few.
    """

    template_fields: Sequence[str] = ("orders", "conn_id")
    lineage_provider = "parcellab"

    def __init__(self, *, orders: Any, conn_id: str = ParcelLabHook.default_conn_name,
                 fail_on_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.orders = orders
        self.conn_id = conn_id
        self.fail_on_errors = fail_on_errors

    def execute(self, context: Context) -> dict[str, Any]:
        hook = ParcelLabHook(self.conn_id)
        summary = CreateSummary("parcellab orders")
        valid = []
        for index, order in enumerate(_records(self.orders)):
            try:
                valid.append(validate_order(order, index, hook.account))
            except InvalidOrderError as err:
                summary.add(order_key(order) or f"#{index}", "error", hook.redact(str(err)))
                self.log.warning("%s", hook.redact(str(err)))
        for result in hook.upsert_orders(valid):
            summary.add(result.key, result.outcome, result.message)
        out = hook.redact_value(summary.to_dict())
        self._remember_lineage(hook.settings.base_url, out)
        self.log.info("parcelLab orders: %s", {k: v for k, v in out.items() if k != "first_failures"})
        if self.fail_on_errors and out["failed"]:
            raise AirflowException(hook.redact(summary.failure_message()))
        return out


class CreateTrackingMoreTrackingsOperator(_ApiWriteLineage, BaseOperator):
    """
    Register parcels for tracking in TrackingMore (``POST /trackings/batch``, 40 per call).
    A parcel the account already has (``meta.code`` 4016, per tracking or as the answer's own
    code) counts as unchanged, not failed. A call that got no answer is not sent again: the
    hook looks the numbers up and counts what it finds (created, unchanged) or fails the rest.

    :param parcels: dicts with ``carrier`` and ``tracking_number`` (other TrackingMore
        fields such as ``order_id``, ``title``, ``customer_email`` are passed on), an
        XComArg, or a DataFrame. Templated.
    :param conn_id: a TrackingMore connection.
    :param fail_on_errors: fail the task when any parcel could not be registered.
    """

    template_fields: Sequence[str] = ("parcels", "conn_id")
    lineage_provider = "trackingmore"

    def __init__(self, *, parcels: Any, conn_id: str = TrackingMoreHook.default_conn_name,
                 fail_on_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parcels = parcels
        self.conn_id = conn_id
        self.fail_on_errors = fail_on_errors

    def execute(self, context: Context) -> dict[str, Any]:
        hook = TrackingMoreHook(self.conn_id)
        summary = CreateSummary("trackingmore trackings")
        for result in hook.create_trackings(_records(self.parcels)):
            summary.add(result.key, result.outcome, result.message)
        out = hook.redact_value(summary.to_dict())
        self._remember_lineage(hook.settings.base_url, out)
        self.log.info("TrackingMore trackings: %s", {k: v for k, v in out.items() if k != "first_failures"})
        if self.fail_on_errors and out["failed"]:
            raise AirflowException(hook.redact(summary.failure_message()))
        return out
