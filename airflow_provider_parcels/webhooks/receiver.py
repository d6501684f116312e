"""
The webhook receiver's core, independent of the web framework: look up the connection named in
the URL, verify the delivery, parse it with the API module's own reader, commit it to the
warehouse, and only then say 2xx.

Answers (the body never holds a secret nor says which check failed beyond the kind):

* 404: no such connection, or one of an API that does not push (only ``trackflow`` and
  ``whereparcel`` do);
* 413: the body is larger than ``max_body_bytes``;
* 401: a missing, wrong or stale signature (TrackFlow ``X-TrackFlow-Signature``; a replay older
  than the signed ``last_updated`` window) or a missing or wrong per-connection token
  (WhereParcel, which signs nothing: ``?token=`` in the URL or the ``X-Parcels-Webhook-Token``
  header); nothing is written;
* 400: signed but unreadable (no parcel in it);
* 503: the connection lacks its secret or its ``warehouse_conn_id``, or the warehouse failed:
  the vendor redelivers later and nothing is lost;
* 200 ``{"accepted": 1, ...}``: committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from airflow_provider_parcels.hooks.base import ParcelTrackingHook
from airflow_provider_parcels.hooks.trackflow import TrackFlowHook, WebhookSignatureError
from airflow_provider_parcels.hooks.whereparcel import WebhookTokenError, WhereParcelHook
from airflow_provider_parcels.models import ParcelStatus, TrackingResult
from airflow_provider_parcels.warehouse import ParcelWarehouse
from airflow_provider_parcels.webhooks.subscriptions import SubscriptionStore

log = logging.getLogger(__name__)

#: Largest body accepted (a TrackFlow shipment with a long history is a few KiB).
DEFAULT_MAX_BODY_BYTES = 256 * 1024
#: Seconds a looked-up connection is reused before it is read again (secret rotation).
CONNECTION_TTL_SECONDS = 60.0
#: Seconds between re-reads of the subscribed carriers when a pushed number is not among them.
CARRIERS_REFRESH_SECONDS = 2.0
#: The header that may carry the per-connection token instead of ``?token=``.
TOKEN_HEADER = "X-Parcels-Webhook-Token"
SIGNATURE_HEADER = "X-TrackFlow-Signature"
PUSHING_HOOKS: dict[str, type[ParcelTrackingHook]] = {"trackflow": TrackFlowHook, "whereparcel": WhereParcelHook}


@dataclass
class Answer:
    """
    What to answer a delivery.

    :param status: HTTP status.
    :param body: JSON body.
    """

    status: int
    body: dict[str, Any]


@dataclass
class Endpoint:
    """
    One connection's receiving end: its hook (for verification and parsing) and its warehouse.

    :param conn_id: the tracking connection.
    :param hook: the API's hook.
    :param warehouse: where events land, or None when the connection names none.
    :param subscriptions: the ``parcel_subscriptions`` table beside it.
    :param loaded_at: monotonic time of the lookup.
    """

    conn_id: str
    hook: ParcelTrackingHook
    warehouse: ParcelWarehouse | None
    subscriptions: SubscriptionStore | None
    loaded_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    carriers: dict[str, str] = field(default_factory=dict)
    carriers_read_at: float = float("-inf")
    committer: GroupCommitter = field(init=False)

    def __post_init__(self) -> None:
        self.committer = GroupCommitter(self.warehouse, self.subscriptions, self.conn_id)


@dataclass
class _Pending:
    result: TrackingResult
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    notify: Callable[[], None] | None = None


class GroupCommitter:
    """
    Commits the deliveries that arrive together in one warehouse transaction (group commit):
    each request waits until the transaction holding its event is committed, so every 2xx is
    still durable, while a burst costs one transaction, not one per delivery. A batch that fails
    is retried one delivery at a time, so one bad event cannot fail the others.

    :param warehouse: where events land.
    :param subscriptions: ``parcel_subscriptions``, told of every committed event after the
        answer (bookkeeping for the safety net, off the answer's path).
    :param name: for the thread's name and the logs.
    :param max_batch: deliveries per transaction at most.
    :param timeout: seconds a request waits for its commit before it answers 503.
    """

    def __init__(self, warehouse: ParcelWarehouse | None, subscriptions: SubscriptionStore | None, name: str,
                 max_batch: int = 500, timeout: float = 30.0) -> None:
        self.warehouse = warehouse
        self.subscriptions = subscriptions
        self.name = name
        self.max_batch = max_batch
        self.timeout = timeout
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0

    def commit(self, result: TrackingResult) -> None:
        """
        Load one result; return once it is committed.

        :param result: the parsed delivery.
        :raises Exception: what the load raised, or ``TimeoutError``.
        """
        pending = _Pending(result)
        self._enqueue(pending)
        if not pending.done.wait(self.timeout):
            raise TimeoutError(f"no commit within {self.timeout} s")
        if pending.error is not None:
            raise pending.error

    async def commit_async(self, result: TrackingResult) -> None:
        """
        :meth:`commit` for the event loop: awaits the commit without holding a thread.

        :param result: the parsed delivery.
        :raises Exception: what the load raised, or ``TimeoutError``.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        pending = _Pending(result, notify=lambda: loop.call_soon_threadsafe(wake))
        self._enqueue(pending)
        await asyncio.wait_for(future, self.timeout)
        if pending.error is not None:
            raise pending.error

    def _enqueue(self, pending: _Pending) -> None:
        self._queue.put(pending)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"parcels-webhook-commit-{self.name}",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        assert self.warehouse is not None
        try:
            self.warehouse.load([p.result for p in batch])
        except Exception:
            if len(batch) == 1:
                batch[0].error = sys.exc_info()[1]
            else:
                for pending in batch:
                    try:
                        self.warehouse.load([pending.result])
                    except Exception as err:
                        pending.error = err
        self.batches += 1
        for pending in batch:  # committed (or failed): the requests may answer now
            pending.done.set()
            if pending.notify is not None:
                with contextlib.suppress(RuntimeError):  # the request's event loop is gone
                    pending.notify()
        committed = [p.result for p in batch if p.error is None]
        if committed and self.subscriptions is not None:
            try:
                self.subscriptions.touch(committed)
            except Exception:  # the events are stored; this is bookkeeping for the safety net only
                log.warning("webhooks of %r: could not note events in parcel_subscriptions", self.name, exc_info=True)


class UnknownConnection(LookupError):
    """No connection of a pushing API under this id."""


def lookup_connection(conn_id: str) -> Any:
    """
    The Airflow connection ``conn_id`` (secrets backends, environment, metadata DB).

    :param conn_id: the connection id from the URL.
    :raises UnknownConnection: there is none.
    """
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as err:  # AirflowNotFoundException, or a lookup that fails for this id
        raise UnknownConnection(conn_id) from err


class WebhookReceiver:
    """
    Verifies and commits webhook deliveries; one instance serves every connection.

    :param max_body_bytes: larger bodies get 413.
    :param get_connection: ``conn_id -> Connection`` (default: Airflow's lookup).
    :param after_commit: called after each commit, before the answer (tests use it to crash there).
    :param on_accepted: called with ``(endpoint, results)`` after the commit (asset events).
    :param connection_ttl: seconds a connection lookup is reused.
    """

    def __init__(
        self,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        get_connection: Callable[[str], Any] = lookup_connection,
        after_commit: Callable[[], None] | None = None,
        on_accepted: Callable[[Endpoint, list[TrackingResult]], None] | None = None,
        connection_ttl: float = CONNECTION_TTL_SECONDS,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.get_connection = get_connection
        self.after_commit = after_commit
        self.on_accepted = on_accepted
        self.connection_ttl = connection_ttl
        self._endpoints: dict[str, Endpoint] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connections
    def endpoint(self, conn_id: str) -> Endpoint:
        """
        The receiving end of ``conn_id``, cached for ``connection_ttl`` seconds.

        :param conn_id: the connection id from the URL.
        :raises UnknownConnection: no such connection, or not of a pushing API.
        """
        with self._lock:
            cached = self._endpoints.get(conn_id)
            if cached is not None and time.monotonic() - cached.loaded_at < self.connection_ttl:
                return cached
        conn = self.get_connection(conn_id)
        hook_class = PUSHING_HOOKS.get((conn.conn_type or "").lower())
        if hook_class is None:
            raise UnknownConnection(conn_id)
        extra = conn.extra_dejson or {}
        warehouse = store = None
        if extra.get("warehouse_conn_id"):
            warehouse = ParcelWarehouse(str(extra["warehouse_conn_id"]), table_prefix=str(extra.get("table_prefix")
                                                                                         or ""),
                                        schema=extra.get("schema") or None)
            store = SubscriptionStore(warehouse)
        endpoint = Endpoint(conn_id, hook_class(conn_id), warehouse, store)
        with self._lock:
            self._endpoints[conn_id] = endpoint
        return endpoint

    # ------------------------------------------------------------------ deliveries
    def receive(self, conn_id: str, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> Answer:
        """
        Handle one delivery synchronously (off the event loop: it may look the connection up and
        waits for the commit).

        :param conn_id: the connection id from the URL.
        :param body: the raw body, already capped by the caller.
        :param headers: request headers (case-insensitive mapping).
        :param query: query parameters.
        """
        try:
            endpoint = self.endpoint(conn_id)
        except UnknownConnection:
            return Answer(404, {"error": "no webhook endpoint for this connection"})
        prepared = self._prepare(endpoint, body, headers, query, allow_io=True)
        if isinstance(prepared, Answer):
            return prepared
        try:
            endpoint.committer.commit(prepared)  # returns once the transaction holding it is committed
        except Exception:
            return self._not_stored(conn_id)
        return self._accepted(endpoint, prepared)

    async def receive_async(self, conn_id: str, body: bytes, headers: Mapping[str, str],
                            query: Mapping[str, str]) -> Answer:
        """
        Handle one delivery on the event loop: verification and parsing are CPU work done in
        place, the commit is awaited (the group committer's thread signals it). Whatever needs
        I/O first (a connection not looked up yet, subscribed carriers to re-read) goes to a
        thread through :meth:`receive`.

        :param conn_id: the connection id from the URL.
        :param body: the raw body, already capped by the caller.
        :param headers: request headers (case-insensitive mapping).
        :param query: query parameters.
        """
        from starlette.concurrency import run_in_threadpool

        endpoint = self._cached_endpoint(conn_id)
        if endpoint is None:
            return await run_in_threadpool(self.receive, conn_id, body, headers, query)
        try:
            prepared = self._prepare(endpoint, body, headers, query, allow_io=False)
        except _NeedsIO:
            return await run_in_threadpool(self.receive, conn_id, body, headers, query)
        if isinstance(prepared, Answer):
            return prepared
        try:
            await endpoint.committer.commit_async(prepared)
        except Exception:
            return self._not_stored(conn_id)
        return self._accepted(endpoint, prepared)

    def _cached_endpoint(self, conn_id: str) -> Endpoint | None:
        with self._lock:
            cached = self._endpoints.get(conn_id)
        if cached is not None and time.monotonic() - cached.loaded_at < self.connection_ttl:
            return cached
        return None

    def _prepare(self, endpoint: Endpoint, body: bytes, headers: Mapping[str, str], query: Mapping[str, str],
                 allow_io: bool) -> Answer | TrackingResult:
        """The parsed delivery, or the answer refusing it."""
        conn_id = endpoint.conn_id
        if len(body) > self.max_body_bytes:
            return Answer(413, {"error": "body too large"})
        try:
            result = self._verify_and_parse(endpoint, body, headers, query, allow_io)
        except _NotConfigured as err:
            log.error("webhook for connection %r refused: %s", conn_id, err)
            return Answer(503, {"error": "webhook endpoint not configured"})
        except _Unreadable as err:
            return Answer(400, {"error": str(err)})
        except (WebhookSignatureError, WebhookTokenError) as err:
            log.warning("webhook for connection %r refused: %s", conn_id, err)
            return Answer(401, {"error": "signature or token rejected"})
        if endpoint.warehouse is None:
            log.error("webhook for connection %r refused: the connection has no extra 'warehouse_conn_id'", conn_id)
            return Answer(503, {"error": "webhook endpoint not configured"})
        return result

    @staticmethod
    def _not_stored(conn_id: str) -> Answer:
        log.exception("webhook for connection %r: the warehouse load failed; the vendor will redeliver", conn_id)
        return Answer(503, {"error": "not stored; retry"})

    def _accepted(self, endpoint: Endpoint, result: TrackingResult) -> Answer:
        """After the commit: the test hook, the asset events, the 200."""
        if self.after_commit is not None:
            self.after_commit()
        if self.on_accepted is not None:
            try:
                self.on_accepted(endpoint, [result])
            except Exception:
                log.warning("webhook for connection %r: asset event not emitted", endpoint.conn_id, exc_info=True)
        return Answer(200, {"accepted": 1, "provider": result.provider, "tracking_number": result.tracking_number,
                            "status": str(result.status)})

    def _verify_and_parse(self, endpoint: Endpoint, body: bytes, headers: Mapping[str, str],
                          query: Mapping[str, str], allow_io: bool = True) -> TrackingResult:
        hook = endpoint.hook
        if isinstance(hook, TrackFlowHook):
            try:
                hook.webhook_secret()
            except WebhookSignatureError as err:
                raise _NotConfigured(str(err)) from None
            signature = headers.get(SIGNATURE_HEADER)
            try:
                result = hook.parse_webhook(body, signature)  # verifies first: signature, then age
            except WebhookSignatureError:
                hook.verify_webhook(body, signature)  # 401 when the signature or the age is what failed
                raise _Unreadable("signed body holds no shipment") from None
            except ValueError as err:
                raise _Unreadable(f"signed body holds no shipment ({type(err).__name__})") from None
            carrier = self._subscribed_carrier(endpoint, result.tracking_number, allow_io)
            if carrier is not None and carrier != result.carrier:
                result = replace(result, carrier=carrier)
        else:
            assert isinstance(hook, WhereParcelHook)
            try:
                hook.webhook_token()
            except WebhookTokenError as err:
                raise _NotConfigured(str(err)) from None
            token = headers.get(TOKEN_HEADER) or query.get("token")
            hook.verify_webhook(token)
            try:
                result = hook.parse_webhook(body, token)
            except WebhookTokenError as err:
                raise _Unreadable(str(err)) from None
        if result.error is not None and result.status is ParcelStatus.UNKNOWN:
            raise _Unreadable(f"signed body could not be read ({result.error.code})")
        return result


    @staticmethod
    def _subscribed_carrier(endpoint: Endpoint, number: str, allow_io: bool = True) -> str | None:
        """The carrier the pushed number was subscribed with, so the row keys match the tracking sync's."""
        if endpoint.subscriptions is None:
            return None
        with endpoint.lock:
            if number in endpoint.carriers:
                return endpoint.carriers[number]
            stale = time.monotonic() - endpoint.carriers_read_at > CARRIERS_REFRESH_SECONDS
        if not stale:
            return None
        if not allow_io:
            raise _NeedsIO
        # one read of every subscription's carrier, at most every few seconds (not one per delivery)
        carriers = {sub.tracking_number: sub.carrier for sub in endpoint.subscriptions.all(endpoint.hook.provider)}
        with endpoint.lock:
            endpoint.carriers = carriers
            endpoint.carriers_read_at = time.monotonic()
        return carriers.get(number)


class _NeedsIO(Exception):
    """Raised on the event loop where a thread must do the work (a database read)."""


class _NotConfigured(Exception):
    pass


class _Unreadable(Exception):
    pass
