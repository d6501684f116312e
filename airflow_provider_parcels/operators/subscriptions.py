"""
Subscribe parcels to push updates (WhereParcel recurring webhooks, TrackFlow webhook
subscriptions) once each, and unsubscribe those that reached a terminal status.

Every registration is one billable call through the hook's transport (quota included), sent once
and never repeated by the operator: a parcel with an active row in ``parcel_subscriptions`` is
not registered again, and a registration whose answer is lost is reported, not retried blindly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperator

from airflow_provider_parcels.models import Parcel

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_parcels.hooks.base import ParcelTrackingHook
    from airflow_provider_parcels.webhooks.subscriptions import SubscriptionStore

#: TrackFlow's events filter values.
TRACKFLOW_EVENTS = ("delivered", "exception", "all")


def webhook_url(base_url: str, conn_id: str) -> str:
    """
    The receiver's URL for a connection: ``<base_url>/parcels/webhooks/<conn_id>``.

    :param base_url: the public URL of the Airflow API server (or of the proxy in front of it).
    :param conn_id: the tracking connection.
    """
    from airflow_provider_parcels.webhooks.app import URL_PREFIX

    return f"{base_url.rstrip('/')}{URL_PREFIX}/{quote(conn_id, safe='')}"


class SubscribeParcelsOperator(BaseOperator):
    """
    Register webhooks for parcels, idempotently, and end the subscriptions of parcels in a terminal status.

    The tracking connection's extras name the warehouse (``warehouse_conn_id``, ``table_prefix``,
    ``schema``) where ``parcel_subscriptions`` lives beside the tracking tables, and hold the
    receiver's secret (TrackFlow ``webhook_secret``; WhereParcel ``webhook_token``, put in the URL
    given to WhereParcel, which signs nothing).

    :param parcels: a list of dicts or ``Parcel``s (or an XComArg of one).
    :param conn_id: a ``trackflow`` or ``whereparcel`` connection.
    :param webhook_base_url: the public base URL of the Airflow API server (or its proxy); the
        receiver's route ``/parcels/webhooks/<conn_id>`` is appended.
    :param events: TrackFlow's events filter (``delivered``, ``exception``, ``all``).
    :param unsubscribe_terminal: end the active subscriptions (of this connection's API) whose
        parcel is delivered, in exception or expired in the warehouse (TrackFlow: ``DELETE``;
        WhereParcel documents no delete: the row is ended).
    """

    template_fields: Sequence[str] = ("parcels", "conn_id", "webhook_base_url")

    def __init__(self, *, parcels: Any, conn_id: str, webhook_base_url: str, events: Sequence[str] = ("all",),
                 unsubscribe_terminal: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        bad = [e for e in events if e not in TRACKFLOW_EVENTS]
        if bad or not events:
            raise ValueError(f"events must be some of {', '.join(TRACKFLOW_EVENTS)}; got {list(events)}")
        self.parcels = parcels
        self.conn_id = conn_id
        self.webhook_base_url = webhook_base_url
        self.events = tuple(events)
        self.unsubscribe_terminal = unsubscribe_terminal

    def execute(self, context: Context) -> dict[str, int]:
        from airflow_provider_parcels.hooks import hook_for_connection

        hook = hook_for_connection(self.conn_id)
        store = subscription_store(hook)
        url = webhook_url(self.webhook_base_url, self.conn_id)
        counts = subscribe(hook, store, self.parcels or (), url, self.events, log=self.log)
        if self.unsubscribe_terminal:
            counts["unsubscribed"] = unsubscribe_terminal(hook, store, log=self.log)
        self.log.info("webhook subscriptions of %s: %s", self.conn_id, counts)
        return counts


def subscription_store(hook: ParcelTrackingHook) -> SubscriptionStore:
    """
    The ``parcel_subscriptions`` table of a tracking connection (from its extras).

    :param hook: a ``trackflow`` or ``whereparcel`` hook.
    :raises ValueError: the connection names no ``warehouse_conn_id``.
    """
    from airflow_provider_parcels.warehouse import ParcelWarehouse
    from airflow_provider_parcels.webhooks.subscriptions import SubscriptionStore

    _ = hook.settings
    extra = hook._extra
    if not extra.get("warehouse_conn_id"):
        raise ValueError(f"connection {hook.conn_id!r} has no extra 'warehouse_conn_id': the warehouse where its "
                         "events land and its subscriptions are kept")
    return SubscriptionStore(ParcelWarehouse(str(extra["warehouse_conn_id"]), table_prefix=str(
        extra.get("table_prefix") or ""), schema=extra.get("schema") or None))


def subscribe(hook: ParcelTrackingHook, store: SubscriptionStore, parcels: Iterable[Any], url: str,
              events: Sequence[str] = ("all",), log: Any = None) -> dict[str, int]:
    """
    Register a webhook for each parcel that has no active subscription yet.

    :param hook: a ``trackflow`` or ``whereparcel`` hook.
    :param store: its ``parcel_subscriptions``.
    :param parcels: dicts or ``Parcel``s.
    :param url: the receiver's URL (without token).
    :param events: TrackFlow's events filter.
    :param log: a logger for per-parcel failures.
    :return: ``{"subscribed", "already", "terminal", "failed"}``.
    """
    from airflow_provider_parcels.hooks.trackflow import TrackFlowHook
    from airflow_provider_parcels.hooks.whereparcel import WhereParcelHook
    from airflow_provider_parcels.webhooks.subscriptions import ACTIVE

    if not isinstance(hook, (TrackFlowHook, WhereParcelHook)):
        raise ValueError(f"connection {hook.conn_id!r} is a {hook.conn_type} connection; only trackflow and "
                         "whereparcel push updates")
    wanted = {p.key: p for p in (Parcel.coerce(v, i) for i, v in enumerate(parcels))}
    known = store.get(hook.provider, wanted)
    statuses = store.parcel_statuses(hook.provider)
    counts = {"subscribed": 0, "already": 0, "terminal": 0, "failed": 0}
    target = url
    if isinstance(hook, WhereParcelHook):
        target = f"{url}?token={quote(hook.webhook_token(), safe='')}"
    for key, parcel in wanted.items():
        row = known.get(key)
        if row is not None and row.state == ACTIVE:
            counts["already"] += 1
            continue
        if statuses.get(key) in ("delivered", "exception", "expired"):
            counts["terminal"] += 1
            continue
        try:
            if isinstance(hook, TrackFlowHook):
                hook_id = hook.subscribe_webhook(parcel, target, events)
            else:
                answer = hook.register_webhook(target, recurring=True, parcel=parcel)
                data = answer.get("data") if isinstance(answer, dict) else None
                hook_id = str((data or {}).get("id") or "") or None
        except Exception as err:  # one parcel's failure must not lose the others' registrations
            counts["failed"] += 1
            if log is not None:
                log.warning("could not subscribe %s %s: %s", parcel.carrier, parcel.tracking_number, err)
            continue
        store.record(hook.provider, hook.conn_id, parcel.carrier, parcel.tracking_number, hook_id, url,
                     events if isinstance(hook, TrackFlowHook) else ("recurring",))
        counts["subscribed"] += 1
    return counts


def unsubscribe_terminal(hook: ParcelTrackingHook, store: SubscriptionStore, log: Any = None) -> int:
    """
    End the active subscriptions whose parcel is in a terminal status (in the warehouse or in the
    last pushed event).

    :param hook: a ``trackflow`` or ``whereparcel`` hook.
    :param store: its ``parcel_subscriptions``.
    :param log: a logger.
    :return: subscriptions ended.
    """
    from airflow_provider_parcels.hooks.trackflow import TrackFlowHook
    from airflow_provider_parcels.webhooks.subscriptions import ACTIVE

    terminal = {"delivered", "exception", "expired"}
    statuses = store.parcel_statuses(hook.provider)
    ended = 0
    for sub in store.all(hook.provider):
        if sub.state != ACTIVE:
            continue
        if statuses.get((sub.carrier, sub.tracking_number)) not in terminal and sub.last_status not in terminal:
            continue
        if isinstance(hook, TrackFlowHook) and sub.webhook_id:
            try:
                hook.unsubscribe_webhook(sub.webhook_id)
            except Exception as err:
                if log is not None:
                    log.warning("could not unsubscribe %s: %s", sub.tracking_number, err)
                continue
        store.end(sub.provider, sub.carrier, sub.tracking_number)
        ended += 1
    return ended
