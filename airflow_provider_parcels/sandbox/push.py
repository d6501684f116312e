"""The sandbox pushes: signed webhooks to the URLs clients registered, when a parcel changes status.

What changes a status:

* ``POST /_sandbox/scan`` (control token) with ``{"tracking_number", "status", "api"?}``: a
  carrier scan. From then on every API answers that number with the new status (a final event
  dated at the scan) and the subscriptions of that number (TrackFlow) or of the whole account
  (WhereParcel registrations without a parcel) get a delivery. The answer holds ``changed_at``
  (epoch seconds) and the number of deliveries queued. ``status`` is a canonical status
  (``exception``, ``delivered``, ``out_for_delivery``...).
* the timed numbers (``SEC...``, ``POLL...``) switching: a watcher peeks the subscribed numbers
  every ``watch_interval`` seconds and pushes when the outcome differs from the last one pushed.

Deliveries (a thread pool, keep-alive connections):

* TrackFlow: the body is the shipment exactly as ``GET /v2/track/{n}`` answers it, with
  ``last_updated`` at the change; header ``X-TrackFlow-Signature`` = hex HMAC-SHA256 of the raw
  body with the webhook secret (``PARCELS_SANDBOX_WEBHOOK_SECRET``, default
  ``sandbox-webhook-secret``). The events filter is honoured (``delivered``, ``exception``
  (also expired), ``all``).
* WhereParcel (its docs show no push body and no signature): ``{"event": "tracking.updated",
  "webhookId", "data": <the result item of POST /v2/track>}`` POSTed to the registered URL as
  given (a receiver puts its own token in it).
* A delivery that gets no 2xx is retried with backoff (0.2 s doubling, ``max_attempts`` in all).

Misbehaviour on request (``POST /_sandbox/webhooks`` with any of): ``redeliver`` (fraction of
deliveries sent again after a 2xx, as after a lost acknowledgement), ``duplicate`` (fraction
sent twice at once), ``reorder`` (each delivery waits a random 0..``reorder`` seconds, so later
scans may arrive first), ``bad_signature`` (fraction of deliveries that get a forged copy beside
them, signed with a wrong secret or sent with a wrong token), ``seed``, ``max_attempts``,
``concurrency`` (deliveries in flight at once, default 16).
``GET /_sandbox/webhooks`` lists the subscriptions and the delivery log (``changed_at``,
``sent_at``, ``acked_at``, ``http_status``, ``attempt``, ``kind``).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .outcomes import Event, OutcomeBook, Tracking, classify, digest
from .places import EVENT_CODES, EVENT_TEXTS
from .wire import Request, Response

if TYPE_CHECKING:
    from .app import SandboxApp

#: The environment variable that sets the TrackFlow webhook secret the sandbox signs with.
WEBHOOK_SECRET_ENV = "PARCELS_SANDBOX_WEBHOOK_SECRET"
DEFAULT_WEBHOOK_SECRET = "sandbox-webhook-secret"
SCAN_STATUSES = ("pending", "info_received", "in_transit", "out_for_delivery", "failed_attempt",
                 "available_for_pickup", "delivered", "exception", "expired")


class PushingBook(OutcomeBook):
    """An :class:`OutcomeBook` whose numbers can be moved to a new status by a scan.

    :param clock: epoch-seconds clock.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self._scans: dict[str, list[tuple[str, float]]] = {}

    def reset(self) -> None:
        """Forget lookups and scans."""
        super().reset()
        self._scans = {}

    def scan(self, number: str, outcome: str, at: float) -> None:
        """Record a carrier scan: ``number`` is in ``outcome`` from ``at`` on.

        :param number: tracking number.
        :param outcome: canonical status.
        :param at: epoch seconds.
        """
        self._scans.setdefault(number.strip().upper(), []).append((outcome, at))

    def lookup(self, api: str, number: str, *, country: str | None = None, count: bool = True) -> Tracking:
        """The tracking, with the latest scan of the number applied on top."""
        tracking = super().lookup(api, number, country=country, count=count)
        scans = list(self._scans.get(number.strip().upper(), ()))
        if not scans or not tracking.found:
            return tracking
        seed = digest(number)
        events = list(tracking.events)
        for outcome, at in scans:  # oldest first; each scan is the newest event
            texts = EVENT_TEXTS[outcome]
            when = datetime.fromtimestamp(at, tz=timezone.utc).replace(microsecond=0)
            events.insert(0, Event(outcome, when, tracking.destination, texts[seed[29] % len(texts)],
                                   EVENT_CODES[outcome]))
        return replace(tracking, outcome=scans[-1][0], events=tuple(events))


@dataclass
class PushSettings:
    """How the sandbox delivers webhooks.

    :param redeliver: fraction of deliveries sent again after a 2xx.
    :param duplicate: fraction sent twice at once.
    :param reorder: seconds of random delay before each delivery (0: none).
    :param bad_signature: fraction that get a forged copy, signed with a wrong secret (TrackFlow) or
        carrying a wrong token (WhereParcel).
    :param max_attempts: attempts of a delivery that gets no 2xx.
    :param seed: seed of the random draws.
    :param watch_interval: seconds between looks at subscribed timed numbers.
    :param concurrency: deliveries in flight at once (connections to the receivers).
    """

    redeliver: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    bad_signature: float = 0.0
    max_attempts: int = 5
    seed: int = 0
    watch_interval: float = 0.5
    concurrency: int = 16

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a subset; raises ``ValueError`` on an unknown name or a bad value."""
        for name, value in changes.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown push setting {name!r}")
            kind = type(getattr(self, name))
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number")
            if name in ("redeliver", "duplicate", "bad_signature") and not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
            if value < 0 or (name == "concurrency" and not 1 <= value <= 512):
                raise ValueError(f"{name} must not be negative" if value < 0 else "concurrency must be 1..512")
            setattr(self, name, kind(value))


@dataclass
class Delivery:
    """One webhook POST (a row of the delivery log).

    :param api: ``trackflow`` or ``whereparcel``.
    :param tracking_number: the parcel.
    :param status: the canonical status pushed.
    :param url: where it goes.
    :param changed_at: epoch seconds of the status change.
    :param kind: ``first``, ``retry``, ``redelivery`` or ``duplicate``.
    """

    api: str
    tracking_number: str
    status: str
    url: str
    changed_at: float
    kind: str = "first"
    attempt: int = 1
    sent_at: float | None = None
    acked_at: float | None = None
    http_status: int | None = None
    error: str | None = None
    bad_signature: bool = False
    body: bytes = field(default=b"", repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The log row as JSON (no body, no headers)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("body", "headers")}


class WebhookPusher:
    """Delivers the sandbox's webhooks.

    :param app: the sandbox app (its API modules hold the subscriptions).
    :param secret: the TrackFlow webhook secret (default ``$PARCELS_SANDBOX_WEBHOOK_SECRET``).
    """

    def __init__(self, app: SandboxApp, secret: str | None = None) -> None:
        self.app = app
        self.secret = secret or os.environ.get(WEBHOOK_SECRET_ENV, "").strip() or DEFAULT_WEBHOOK_SECRET
        self.settings = PushSettings()
        self.log: list[Delivery] = []
        self._lock = threading.Lock()
        self._random = random.Random(0)
        self._pool = ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="sandbox-push")
        self._local = threading.local()
        self._pushed: dict[tuple[str, str], str] = {}
        self._watcher: threading.Thread | None = None
        self._pending = 0
        self._idle = threading.Condition(self._lock)

    # --- control ------------------------------------------------------------------------
    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change push settings (any subset); raises ``ValueError`` on a bad name or value."""
        with self._lock:
            before = self.settings.concurrency
            self.settings.update(changes)
            if "seed" in changes:
                self._random = random.Random(self.settings.seed)
            if self.settings.concurrency != before:
                old, self._pool = self._pool, ThreadPoolExecutor(max_workers=self.settings.concurrency,
                                                                 thread_name_prefix="sandbox-push")
                old.shutdown(wait=False)
            return dict(self.settings.__dict__)

    def reset(self) -> None:
        """Forget the log and the settings."""
        self.configure(**PushSettings().__dict__)
        with self._lock:
            self.settings = PushSettings()
            self._random = random.Random(0)
            self.log = []
            self._pushed = {}

    def control(self, method: str, name: str, request: Request) -> Response:
        """``/_sandbox/scan`` and ``/_sandbox/webhooks``."""
        body = request.json_or_none() if method == "POST" else None
        if name == "scan" and method == "POST":
            if not isinstance(body, dict) or not isinstance(body.get("tracking_number"), str):
                return Response(400, {"error": "send {\"tracking_number\": ..., \"status\": ...}"})
            status = body.get("status")
            if status not in SCAN_STATUSES:
                return Response(400, {"error": f"status must be one of {', '.join(SCAN_STATUSES)}"})
            return Response(200, self.scan(body["tracking_number"], status, api=body.get("api")))
        if name == "webhooks" and method == "GET":
            return Response(200, self.snapshot())
        if name == "webhooks" and method == "POST":
            if not isinstance(body, dict):
                return Response(400, {"error": "send a JSON object of push settings"})
            try:
                return Response(200, self.configure(**body))
            except ValueError as exc:
                return Response(400, {"error": str(exc)})
        return Response(404, {"error": f"no control endpoint {method} {request.path}"})

    def snapshot(self) -> dict[str, Any]:
        """Subscriptions, settings and the delivery log."""
        with self._lock:
            log = [d.as_dict() for d in self.log]
        return {"subscriptions": self.subscriptions(), "settings": dict(self.settings.__dict__), "deliveries": log,
                "pending": self._pending}

    def subscriptions(self, api: str | None = None, number: str | None = None) -> list[dict[str, Any]]:
        """Registered webhooks (of one API, matching one number when given)."""
        out = []
        for name in ("trackflow", "whereparcel"):
            if api not in (None, name) or name not in self.app.apis:
                continue
            fake = self.app.apis[name]
            wanted = number.upper() if number is not None else None
            with fake.lock:
                for hook in getattr(fake, "webhooks", {}).values():
                    subscribed = hook.get("tracking_number") or hook.get("trackingNumber")
                    if wanted is None or subscribed is None or subscribed.upper() == wanted:
                        out.append(dict(hook, api=name))
        return out

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no delivery is queued or in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # --- changes ------------------------------------------------------------------------
    def scan(self, number: str, status: str, api: str | None = None) -> dict[str, Any]:
        """A carrier scan: move ``number`` to ``status`` and push to its subscriptions.

        :param number: tracking number.
        :param status: canonical status.
        :param api: push only to this API's subscriptions (default both).
        """
        changed_at = time.time()
        book = self.app.book
        if isinstance(book, PushingBook):
            book.scan(number, status, changed_at)
        queued = self.push(number, changed_at, api)
        return {"tracking_number": number, "status": status, "changed_at": changed_at, "deliveries": queued}

    def push(self, number: str, changed_at: float, api: str | None = None) -> int:
        """Queue deliveries of the current state of ``number`` to every matching subscription."""
        queued = 0
        for hook in self.subscriptions(api, number):
            delivery = self._delivery(hook, number, changed_at)
            if delivery is None:
                continue
            with self._lock:
                self._pushed[(hook["api"], number.upper())] = delivery.status
                copies = 2 if self._random.random() < self.settings.duplicate else 1
            for index in range(copies):
                self._submit(replace(delivery, kind="duplicate") if index else delivery)
            queued += copies
        self._ensure_watcher()
        return queued

    def _delivery(self, hook: dict[str, Any], number: str, changed_at: float) -> Delivery | None:
        api = self.app.apis[hook["api"]]
        if hook["api"] == "trackflow":
            shape = api.shape(number, None, count=False)
            if not shape.get("success"):
                return None
            status = shape["status"]
            wanted = set(hook.get("events") or ["all"])
            if "all" not in wanted and status not in wanted:
                return None
            shape.pop("success", None)
            shape["last_updated"] = datetime.fromtimestamp(changed_at, tz=timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
            body = json.dumps(shape).encode()
            canonical = self.app.book.lookup("trackflow", number, count=False).outcome
            return Delivery("trackflow", number, canonical, hook["url"], changed_at, body=body,
                            headers={"Content-Type": "application/json"})
        item = api.result_item({"carrier": hook.get("carrier") or _carrier_of(number),
                                "trackingNumber": number}, count=False)
        if not item.get("success"):
            return None
        body = json.dumps({"event": "tracking.updated", "webhookId": hook["id"], "data": item}).encode()
        canonical = self.app.book.lookup("whereparcel", number, count=False).outcome
        return Delivery("whereparcel", number, canonical, hook["url"], changed_at, body=body,
                        headers={"Content-Type": "application/json"})

    def _submit(self, delivery: Delivery) -> None:
        with self._lock:
            forged = self._random.random() < self.settings.bad_signature
            self._pending += 2 if forged else 1
        self._pool.submit(self._send, self._sign(delivery, False))
        if forged:  # a forged copy beside the genuine one (a stranger's POST): must be refused
            self._pool.submit(self._send, self._sign(replace(delivery, kind="forged"), True))

    def _sign(self, delivery: Delivery, bad: bool) -> Delivery:
        headers = dict(delivery.headers)
        url = delivery.url
        if delivery.api == "trackflow":
            secret = (self.secret + "-wrong") if bad else self.secret
            headers["X-TrackFlow-Signature"] = hmac.new(secret.encode(), delivery.body, hashlib.sha256).hexdigest()
        elif bad:
            parts = urlsplit(url)
            query = [(k, "wrong-token" if k == "token" else v) for k, v in parse_qsl(parts.query)]
            url = urlunsplit(parts._replace(query=urlencode(query or [("token", "wrong-token")])))
        return replace(delivery, headers=headers, url=url, bad_signature=bad)

    # --- sending ------------------------------------------------------------------------
    def _send(self, delivery: Delivery) -> None:
        try:
            settings = self.settings
            if settings.reorder > 0:
                with self._lock:
                    pause = self._random.random() * settings.reorder
                time.sleep(pause)
            attempt = 1
            while True:
                sent = replace(delivery, attempt=attempt, kind=delivery.kind if attempt == 1 else "retry")
                self._post(sent)
                with self._lock:
                    self.log.append(sent)
                ok = sent.http_status is not None and 200 <= sent.http_status < 300
                if ok or attempt >= settings.max_attempts or (sent.http_status in (400, 401, 404, 413)):
                    break
                time.sleep(0.2 * 2 ** (attempt - 1))
                attempt += 1
            if ok:
                with self._lock:
                    again = self._random.random() < settings.redeliver
                if again:
                    with self._lock:
                        self._pending += 1
                    self._pool.submit(self._send, replace(delivery, kind="redelivery"))
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _post(self, delivery: Delivery) -> None:
        parts = urlsplit(delivery.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for fresh in (False, True):
            conn = self._connection(parts.scheme, parts.hostname or "127.0.0.1", parts.port, fresh)
            delivery.sent_at = time.time()
            try:
                conn.request("POST", target or "/", body=delivery.body, headers=delivery.headers)
                response = conn.getresponse()
                response.read()
                delivery.http_status = response.status
                delivery.acked_at = time.time()
                delivery.error = None
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                return
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                delivery.error = type(exc).__name__
        delivery.http_status = None

    def _connection(self, scheme: str, host: str, port: int | None, fresh: bool) -> http.client.HTTPConnection:
        conns: dict[tuple[str, str, int | None], http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "conns", {})
        key = (scheme, host, port)
        conn = conns.get(key)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            cls = _HTTPSConnection if scheme == "https" else _HTTPConnection
            conn = conns[key] = cls(host, port, timeout=10)
        return conn

    # --- watching timed numbers ---------------------------------------------------------
    def _ensure_watcher(self) -> None:
        with self._lock:
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = threading.Thread(target=self._watch, name="sandbox-push-watch", daemon=True)
                self._watcher.start()

    def _watch(self) -> None:
        stopping = self.app.stopping
        while not stopping.wait(self.settings.watch_interval):
            for hook in self.subscriptions():
                number = hook.get("tracking_number") or hook.get("trackingNumber")
                if not number or classify(number).mode not in ("polls", "seconds"):
                    continue
                outcome = self.app.book.lookup(hook["api"], number, count=False).outcome
                with self._lock:
                    last = self._pushed.setdefault((hook["api"], number.upper()), outcome)
                if last != outcome:
                    self.push(number, time.time(), hook["api"])

    def register_hook(self) -> None:
        """Called when a client registers a webhook: starts the watcher."""
        self._ensure_watcher()


class _NoDelay:
    """Headers and body leave at once: without ``TCP_NODELAY`` Nagle's algorithm and the peer's
    delayed ACK hold every keep-alive request's body back for tens to hundreds of milliseconds."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]


class _HTTPConnection(_NoDelay, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_NoDelay, http.client.HTTPSConnection):
    pass


def _carrier_of(number: str) -> str:
    return "kr.cj" if number[:1].isdigit() else "de.dhl"


def new_webhook_id() -> str:
    """A WhereParcel-style webhook id."""
    return f"wh_{uuid.uuid4().hex[:16]}"
