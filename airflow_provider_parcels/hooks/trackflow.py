"""
TrackFlow: ``GET /v2/track/{n}`` for one parcel, ``POST /v2/track/batch`` for 5 / 20 / 50
by plan, ``X-API-Key`` header; webhooks signed with HMAC-SHA256 in ``X-TrackFlow-Signature``.

Traps and choices: a batch counts one lookup per parcel against the per-minute quota (the
doc says so), so the rate limiter charges per parcel; an event's ``status`` is a
description text and its ``type`` is the status word; the batch answer is not documented,
so the parser accepts a list, or an object holding the list under ``results``,
``shipments``, ``trackings``, ``items`` or ``data``, each entry either the single-parcel
shape or ``{"success": false, "tracking_number", "error": {"code", "message"}}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from airflow_provider_parcels.hooks.base import ParcelTrackingHook
from airflow_provider_parcels.hooks.parsing import (
    StatusMap,
    dedupe_events,
    first_event_at,
    make_event,
    parse_utc,
    text,
)
from airflow_provider_parcels.hooks.settings import Plan
from airflow_provider_parcels.hooks.transport import ApiRequest
from airflow_provider_parcels.models import Parcel, ParcelStatus, TrackingResult

#: How old a webhook's signed ``last_updated`` may be before the delivery is refused as a replay.
BODY_MAX_AGE_SECONDS = 24 * 3600.0

S = ParcelStatus
TRACKFLOW_STATUS = StatusMap(
    "TrackFlow",
    {
        "pending": S.PENDING,
        "info_received": S.INFO_RECEIVED,
        "in_transit": S.IN_TRANSIT,
        "transit": S.IN_TRANSIT,
        "out_for_delivery": S.OUT_FOR_DELIVERY,
        "failed_attempt": S.FAILED_ATTEMPT,
        "available_for_pickup": S.AVAILABLE_FOR_PICKUP,
        "delivered": S.DELIVERED,
        "exception": S.EXCEPTION,
        "expired": S.EXPIRED,
        "not_found": S.NOT_FOUND,
    },
)
_LIST_KEYS = ("results", "shipments", "trackings", "items", "data")


class WebhookSignatureError(ValueError):
    """A TrackFlow webhook whose signature is missing, wrong or too old."""


class TrackFlowHook(ParcelTrackingHook):
    """
    Hook for the TrackFlow API.

    The connection's password holds the API key; extras ``plan`` (free, starter, growth,
    enterprise), ``requests_per_minute``, ``max_concurrency``, ``timeout``, and
    ``webhook_secret`` for verifying webhook signatures.

    :param conn_id: the Airflow connection, default ``trackflow_default``.
    """

    conn_type = "trackflow"
    default_conn_name = "trackflow_default"
    hook_name = "TrackFlow"
    provider = "trackflow"
    default_base_url = "https://api.trackflow.io"
    plans = {
        "free": Plan(10, 5),
        "starter": Plan(60, 20),
        "growth": Plan(300, 50),
        "enterprise": Plan(None, 50),
    }
    max_batch_size = 50
    quota_counts_parcels = True
    status_map = TRACKFLOW_STATUS
    test_request = ApiRequest("GET", "/v2/carriers")

    def auth_headers(self) -> dict[str, str]:
        return {"X-API-Key": str(self._password)}

    def build_batch_request(self, parcels: Sequence[Parcel]) -> ApiRequest:
        if len(parcels) == 1:
            (p,) = parcels
            return ApiRequest("GET", f"/v2/track/{quote(p.tracking_number, safe='')}",
                              params={"carrier": p.carrier}, parcels=(p,))
        shipments = [{"tracking_number": p.tracking_number, "carrier": p.carrier} for p in parcels]
        return ApiRequest("POST", "/v2/track/batch", json={"shipments": shipments},
                          parcels=tuple(parcels), cost=len(parcels))

    def parse_track_response(self, request: ApiRequest, body: Any) -> list[TrackingResult]:
        out = []
        for item in _entries(body):
            number = item.get("tracking_number") or item.get("trackingNumber")
            carrier = item.get("carrier")
            carrier_code = carrier.get("code") if isinstance(carrier, Mapping) else carrier
            parcel = request.find(number, carrier_code)
            if parcel is None and len(request.parcels) == 1 and not number:
                parcel = request.parcels[0]
            if parcel is None:
                continue
            if item.get("success") is False or isinstance(item.get("error"), Mapping):
                error = item.get("error") if isinstance(item.get("error"), Mapping) else {}
                code = str(error.get("code") or "tracking_failed").lower()
                out.append(self.failure(parcel, code, str(error.get("message") or code), raw=item))
            else:
                out.append(self.read_item(parcel, self.parse_shipment, parcel, item))
        return out

    def parse_shipment(self, parcel: Parcel, item: Mapping[str, Any]) -> TrackingResult:
        """One parcel in the single-tracking shape (also the webhook payload)."""
        events = dedupe_events(
            make_event(
                when=e.get("timestamp"),
                status=self.status_map(e.get("type")),
                provider_status=e.get("type"),
                description=e.get("description") or e.get("status"),
                location=e.get("location"),
                raw=e,
            )
            for e in item.get("events") or ()
            if isinstance(e, Mapping)
        )
        carrier = item.get("carrier") if isinstance(item.get("carrier"), Mapping) else {}
        status = self.status_map(item.get("status"))
        return self.result(
            parcel,
            status=status,
            provider_status=text(item.get("status")),
            status_text=text(item.get("status_description")),
            carrier_name=text(carrier.get("name")),
            estimated_delivery=parse_utc(item.get("estimated_delivery")),
            delivered_at=first_event_at(events, S.DELIVERED) if status is S.DELIVERED else None,
            origin_country=text((item.get("origin") or {}).get("country")),
            destination_country=text((item.get("destination") or {}).get("country")),
            events=events,
            raw=item,
        )

    # ------------------------------------------------------------------ webhooks

    def webhook_secret(self) -> str:
        """
        The connection's extra ``webhook_secret``, stripped.

        :raises WebhookSignatureError: absent or blank, naming the connection and the field.
        """
        _ = self.settings
        secret = self._extra.get("webhook_secret")
        if secret is None or secret == "":
            raise WebhookSignatureError(f"connection {self.conn_id!r} has no extra 'webhook_secret'")
        secret = str(secret).strip()
        if not secret:
            raise WebhookSignatureError(
                f"connection {self.conn_id!r} ({self.conn_type}): extra 'webhook_secret' is blank; "
                "set it to the webhook secret TrackFlow gave you"
            )
        return secret

    def verify_webhook(self, body: bytes, signature: str | None, *, timestamp: str | None = None,
                       tolerance: float = 300.0, max_age: float = BODY_MAX_AGE_SECONDS,
                       require_fresh: bool = True) -> None:
        """
        Check a delivery: ``X-TrackFlow-Signature`` (hex HMAC-SHA256 of the raw body with the
        webhook secret, optionally ``sha256=`` prefixed) in constant time, then its age, so a
        captured delivery cannot be replayed later.

        TrackFlow signs the body alone and sends no timestamp header; the signed body carries
        the shipment's ``last_updated``, which is the age checked by default: at most ``max_age``
        old (a day: vendors redeliver for hours, and a carrier's scan may reach TrackFlow late)
        and at most ``tolerance`` in the future. A replay inside that window is harmless: it
        parses to the same result, which the warehouse loads as the same rows. A sender that
        adds a timestamp header signs ``"{timestamp}.{body}"``: pass it as ``timestamp``.

        :param body: the raw request body, exactly as received.
        :param signature: the header's value.
        :param timestamp: a delivery timestamp header (epoch seconds), if the sender adds one;
            it is then signed as ``"{timestamp}.{body}"`` and checked instead of ``last_updated``.
        :param tolerance: seconds a timestamp header may be older or newer than now, and a
            ``last_updated`` newer than now (clock skew).
        :param max_age: seconds a signed ``last_updated`` may be older than now.
        :param require_fresh: check the age (default). ``False`` accepts a body without a
            ``last_updated`` and of any age: replays are then possible.
        :raises WebhookSignatureError: missing, malformed, wrong, too old or of no known age.
        """
        if not signature:
            raise WebhookSignatureError("missing X-TrackFlow-Signature header")
        given = signature.strip()
        if given.lower().startswith("sha256="):
            given = given[7:]
        message = body
        if timestamp is not None:
            _check_age(_epoch(timestamp), tolerance)
            message = f"{timestamp}.".encode("utf-8", "replace") + body
        expected = hmac.new(self.webhook_secret().encode(), message, hashlib.sha256).hexdigest()
        # bytes on both sides: a header with non-ASCII characters is a mismatch, not a TypeError
        if not hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace")):
            raise WebhookSignatureError("X-TrackFlow-Signature does not match the body")
        if timestamp is None and require_fresh:
            _check_age(_signed_last_updated(body), tolerance, max_age)

    def parse_webhook(self, body: bytes, signature: str | None, *, timestamp: str | None = None,
                      carrier: str | None = None, tolerance: float = 300.0,
                      max_age: float = BODY_MAX_AGE_SECONDS, require_fresh: bool = True) -> TrackingResult:
        """
        Verify a webhook delivery (see :meth:`verify_webhook`) and read it as a ``TrackingResult``.

        :param body: the raw request body.
        :param signature: the ``X-TrackFlow-Signature`` header.
        :param timestamp: a delivery timestamp header, if the sender adds one.
        :param carrier: the carrier code to record, when the payload's should be overridden.
        :param tolerance: seconds of clock skew allowed (and the age of a timestamp header).
        :param max_age: seconds a signed ``last_updated`` may be old.
        :param require_fresh: refuse deliveries of no known age or older than ``tolerance``.
        """
        self.verify_webhook(body, signature, timestamp=timestamp, tolerance=tolerance, max_age=max_age,
                            require_fresh=require_fresh)
        payload = json.loads(body)
        item = payload.get("data", payload) if isinstance(payload, Mapping) else {}
        if not isinstance(item, Mapping):
            raise WebhookSignatureError("webhook body holds no shipment")
        if not item.get("tracking_number"):
            raise WebhookSignatureError("webhook body holds no tracking_number")
        carrier_field = item.get("carrier")
        code = carrier or (carrier_field.get("code") if isinstance(carrier_field, Mapping) else carrier_field)
        parcel = Parcel(carrier=str(code or "unknown"), tracking_number=str(item.get("tracking_number")))
        return self.parse_shipment(parcel, item)

    def subscribe_webhook(self, parcel: Parcel, url: str, events: Sequence[str] = ("all",)) -> str:
        """
        Subscribe ``url`` to one parcel's events (``POST /v2/webhooks``), sent once through the
        hook's transport (quota included) and never repeated: a repeat could subscribe twice.

        :param parcel: the parcel.
        :param url: the receiver's URL.
        :param events: the events filter: ``delivered``, ``exception``, ``all``.
        :return: the subscription's ``webhookId``.
        :raises RetryableApiError: no usable answer (the subscription may exist).
        :raises ValueError: TrackFlow refused it (4xx), with its message.
        """
        body = {"tracking_number": parcel.tracking_number, "url": url, "events": list(events)}
        with self.redacting():
            response = self.send(ApiRequest("POST", "/v2/webhooks", json=body))
            self.raise_for_retry(response)
            answer = response.json()
            if response.status_code >= 400:
                detail = self.error_message(answer)
                raise ValueError(f"TrackFlow refused the webhook: {detail or f'HTTP {response.status_code}'}")
            hook_id = _webhook_id(answer)
            if not hook_id:
                raise ValueError("TrackFlow answered the webhook subscription without an id")
            return hook_id

    def unsubscribe_webhook(self, webhook_id: str) -> bool:
        """
        Delete a subscription (``DELETE /v2/webhooks/{webhookId}``; idempotent, so retried by ``call``).

        :param webhook_id: the id :meth:`subscribe_webhook` returned.
        :return: True when deleted, False when TrackFlow did not know it (404: gone already).
        """
        response = self.call(ApiRequest("DELETE", f"/v2/webhooks/{quote(webhook_id, safe='')}"))
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise ValueError(f"TrackFlow refused to delete webhook {webhook_id}: HTTP {response.status_code}")
        return True


def _webhook_id(answer: Any) -> str | None:
    """The id in a subscription answer: ``id`` or ``webhookId``, at the top or under ``data``."""
    for holder in (answer, answer.get("data") if isinstance(answer, Mapping) else None):
        if isinstance(holder, Mapping):
            for key in ("id", "webhookId", "webhook_id"):
                if holder.get(key):
                    return str(holder[key])
    return None


def _epoch(timestamp: str) -> float:
    """A timestamp header as epoch seconds; refused when it is no finite number."""
    try:
        sent = float(timestamp)
    except (TypeError, ValueError):
        raise WebhookSignatureError("malformed webhook timestamp") from None
    if not math.isfinite(sent):
        raise WebhookSignatureError("malformed webhook timestamp")
    return sent


def _signed_last_updated(body: bytes) -> float:
    """The ``last_updated`` of a (verified) delivery body, epoch seconds."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookSignatureError("webhook body is not JSON") from None
    item = payload.get("data", payload) if isinstance(payload, Mapping) else None
    moment = parse_utc(item.get("last_updated")) if isinstance(item, Mapping) else None
    if moment is None:
        raise WebhookSignatureError(
            "webhook body carries no last_updated, so a replay cannot be told apart: pass the sender's "
            "timestamp header as timestamp=, or require_fresh=False to accept it"
        )
    return moment.timestamp()


def _check_age(sent: float, tolerance: float, max_age: float | None = None) -> None:
    """Refuse a moment more than ``max_age`` (default ``tolerance``) ago or ``tolerance`` ahead."""
    age = time.time() - sent
    if age > (tolerance if max_age is None else max_age) or -age > tolerance:
        raise WebhookSignatureError("webhook timestamp outside the tolerance (replay?)")


def _entries(body: Any) -> list[Mapping[str, Any]]:
    if isinstance(body, list):
        return [e for e in body if isinstance(e, Mapping)]
    if isinstance(body, Mapping):
        for key in _LIST_KEYS:
            value = body.get(key)
            if isinstance(value, list):
                return [e for e in value if isinstance(e, Mapping)]
            if isinstance(value, Mapping):
                nested = _entries(value)
                if nested:
                    return nested
        if "tracking_number" in body or "status" in body:
            return [body]
    return []
