"""
WhereParcel: ``POST /v2/track`` with up to 5 parcels, per-item success or failure inside
one HTTP 200 answer, ``Authorization: Bearer KEY:SECRET``.

Choices where the documentation is loose: ``trackingItems`` is always sent as an array (the
doc's Python sample sends an object keyed ``"0"``, ``"1"``; its other samples and the field
table say array); ``picked_up`` counts as in transit; a failed item whose error code reads
as not-found gives status ``not_found``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_parcels.hooks.base import ParcelTrackingHook
from airflow_provider_parcels.hooks.exceptions import ParcelApiError, RetryableApiError
from airflow_provider_parcels.hooks.parsing import StatusMap, dedupe_events, first_event_at, make_event, text
from airflow_provider_parcels.hooks.settings import Plan
from airflow_provider_parcels.hooks.transport import ApiRequest, ApiResponse
from airflow_provider_parcels.models import Parcel, ParcelStatus, TrackingResult

S = ParcelStatus
WHEREPARCEL_STATUS = StatusMap(
    "WhereParcel",
    {
        "pending": S.PENDING,
        "info_received": S.INFO_RECEIVED,
        "label_created": S.INFO_RECEIVED,
        "picked_up": S.IN_TRANSIT,
        "in_transit": S.IN_TRANSIT,
        "out_for_delivery": S.OUT_FOR_DELIVERY,
        "delivery_failed": S.FAILED_ATTEMPT,
        "failed_attempt": S.FAILED_ATTEMPT,
        "ready_for_pickup": S.AVAILABLE_FOR_PICKUP,
        "available_for_pickup": S.AVAILABLE_FOR_PICKUP,
        "delivered": S.DELIVERED,
        "exception": S.EXCEPTION,
        "returned": S.EXCEPTION,
        "expired": S.EXPIRED,
        "not_found": S.NOT_FOUND,
    },
)


class WebhookRegistrationError(ParcelApiError):
    """
    ``POST /v2/webhooks/register`` got no usable answer. The message names the call, why, and
    whether the webhook may exist anyway (after a timeout, a reset or a 5xx it may).

    :param code: ``timeout``, ``connection_error``, ``server_error``, ``rate_limited``, ...
    :param message: the sentence.
    :param maybe_registered: whether WhereParcel may have carried the call out.
    """

    def __init__(self, code: str, message: str, maybe_registered: bool) -> None:
        super().__init__(message)
        self.code = code
        self.maybe_registered = maybe_registered

    @classmethod
    def from_error(cls, err: RetryableApiError) -> WebhookRegistrationError:
        """The error for one failed attempt of the registration call."""
        call = "WhereParcel POST /v2/webhooks/register"
        if err.code in ("rate_limited", "quota_exhausted"):
            return cls(err.code, f"{call} was refused ({err.code}: {err.message}); nothing was registered, "
                                 "call again later", maybe_registered=False)
        return cls(err.code, f"{call} got no usable answer ({err.code}: {err.message}); the call is not "
                             "repeated because a repeat could register the webhook twice: the webhook may or "
                             "may not be registered, check your WhereParcel webhooks before registering again",
                   maybe_registered=True)


class WhereParcelHook(ParcelTrackingHook):
    """
    Hook for the WhereParcel API.

    The connection's login holds the API key, its password the secret key; extras ``plan``
    (free, starter, pro, business), ``requests_per_minute``, ``max_concurrency``, ``timeout``.

    :param conn_id: the Airflow connection, default ``whereparcel_default``.
    """

    conn_type = "whereparcel"
    default_conn_name = "whereparcel_default"
    hook_name = "WhereParcel"
    provider = "whereparcel"
    default_base_url = "https://api.whereparcel.com"
    plans = {
        "free": Plan(1, 5),
        "starter": Plan(30, 5),
        "pro": Plan(60, 5),
        "business": Plan(200, 5),
    }
    max_batch_size = 5
    seconds_per_request = 25.0  # "average response time 5 seconds per item", 5 items
    required_credentials = (("login", "API key"), ("password", "secret key"))
    status_map = WHEREPARCEL_STATUS
    # Empty list: authenticated but not billable; 400 proves the key was accepted.
    test_request = ApiRequest("POST", "/v2/track", json={"trackingItems": []})
    test_accept = (200, 400)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._login}:{self._password}"}

    def build_batch_request(self, parcels: Sequence[Parcel]) -> ApiRequest:
        items = []
        for p in parcels:
            item = {"carrier": p.carrier, "trackingNumber": p.tracking_number}
            for key, value in (("clientId", p.client_id), ("postalCode", p.postal_code),
                               ("phoneNumber", p.phone_number)):
                if value:
                    item[key] = value
            items.append(item)
        return ApiRequest("POST", "/v2/track", json={"trackingItems": items}, parcels=tuple(parcels))

    def check_answer(self, request: ApiRequest, response: ApiResponse, body: Any) -> None:
        if isinstance(body, Mapping) and body.get("success") is False and response.status_code < 400:
            error = body.get("error") or {}
            if str(error.get("code", "")).upper().startswith("RATE_LIMIT"):
                raise self.rate_limited(response)

    def parse_track_response(self, request: ApiRequest, body: Any) -> list[TrackingResult]:
        items = body.get("results") if isinstance(body, Mapping) else body
        if isinstance(items, Mapping):  # tolerate an object keyed "0", "1", ... like the Python sample
            items = list(items.values())
        out = []
        for item in items or ():
            if not isinstance(item, Mapping):
                continue
            data = item.get("data") if isinstance(item.get("data"), Mapping) else {}
            parcel = request.find(item.get("trackingNumber") or data.get("trackingNumber"),
                                  item.get("carrier") or data.get("carrier"))
            if parcel is None:
                continue
            if not _succeeded(item) or not data:
                error = item.get("error")
                error = error if isinstance(error, Mapping) else {"message": error} if error else {}
                code = str(error.get("code") or "tracking_failed")
                message = str(error.get("message") or item.get("message")
                              or "WhereParcel could not track this parcel")
                code = "not_found" if "NOT_FOUND" in code.upper() else code.lower()
                out.append(self.failure(parcel, code, message, raw=item))
                continue
            out.append(self.read_item(parcel, self._result, parcel, data, item))
        return out

    def _result(self, parcel: Parcel, data: Mapping[str, Any], item: Mapping[str, Any]) -> TrackingResult:
        events = dedupe_events(
            make_event(
                when=e.get("timestamp"),
                status=self.status_map(_delivery_status(e)),
                provider_status=_delivery_status(e),
                description=e.get("description") or e.get("statusText"),
                location=e.get("location"),
                raw=e,
            )
            for e in data.get("events") or ()
            if isinstance(e, Mapping)
        )
        raw_status = _delivery_status(data)
        status = self.status_map(raw_status)
        return self.result(
            parcel,
            status=status,
            provider_status=text(raw_status),
            status_text=text(data.get("statusText") or data.get("deliveryStatusText")),
            carrier_name=text(data.get("carrierName")),
            delivered_at=first_event_at(events, S.DELIVERED) if status is S.DELIVERED else None,
            events=events,
            raw=item,
        )

    def register_webhook(self, url: str, *, recurring: bool = True, parcel: Parcel | None = None) -> dict:
        """
        Subscribe ``url`` to status changes (``POST /v2/webhooks/register``), sent once and
        never repeated by the hook (a repeat could register the webhook twice).

        :param url: your HTTPS endpoint.
        :param recurring: keep notifying on every change.
        :param parcel: limit the subscription to one parcel.
        :raises WebhookRegistrationError: no usable answer (timeout, reset, 5xx, 429), saying
            whether the webhook may have been registered.
        :raises ValueError: WhereParcel refused the subscription (4xx), with its message.
        """
        body: dict[str, Any] = {"url": url, "recurring": recurring}
        if parcel is not None:
            body.update(carrier=parcel.carrier, trackingNumber=parcel.tracking_number)
        with self.redacting():
            try:
                response = self.send(ApiRequest("POST", "/v2/webhooks/register", json=body))
                self.raise_for_retry(response)
            except RetryableApiError as err:
                raise WebhookRegistrationError.from_error(err) from None
            if response.status_code >= 400:
                detail = None
                with contextlib.suppress(RetryableApiError):
                    detail = self.error_message(response.json())
                raise ValueError(f"WhereParcel refused the webhook: {detail or f'HTTP {response.status_code}'}")
            try:
                answer = response.json()
            except RetryableApiError as err:  # an unreadable 200 is no answer: it may have registered
                raise WebhookRegistrationError.from_error(err) from None
            return self.redact_value(answer)

    # ------------------------------------------------------------------ webhooks (receiving)

    def webhook_token(self) -> str:
        """
        The connection's extra ``webhook_token``: WhereParcel signs nothing, so the URL given to it
        carries this per-connection secret (``?token=...``) and the receiver compares it.

        :raises WebhookTokenError: absent or blank, naming the connection and the field.
        """
        _ = self.settings
        token = str(self._extra.get("webhook_token") or "").strip()
        if not token:
            raise WebhookTokenError(f"connection {self.conn_id!r} has no extra 'webhook_token'")
        return token

    def verify_webhook(self, token: str | None) -> None:
        """
        Compare a delivery's token (from the URL or a header) with ``webhook_token``, in constant time.

        :param token: the token the delivery carried.
        :raises WebhookTokenError: missing or wrong.
        """
        if not token:
            raise WebhookTokenError("missing webhook token")
        if not hmac.compare_digest(self.webhook_token().encode(), token.strip().encode("utf-8", "replace")):
            raise WebhookTokenError("webhook token does not match")

    def parse_webhook(self, body: bytes, token: str | None) -> TrackingResult:
        """
        Verify a delivery (see :meth:`verify_webhook`) and read it with the same item reader as a
        ``POST /v2/track`` answer. The body is a result item (``{"carrier", "trackingNumber",
        "success", "data"}``) or an envelope holding one under ``data`` (the WhereParcel docs do not
        show the push body; both are read).

        :param body: the raw request body.
        :param token: the token the delivery carried.
        :raises WebhookTokenError: a bad token, or a body holding no parcel.
        """
        self.verify_webhook(token)
        try:
            payload = json.loads(body)
        except ValueError:
            raise WebhookTokenError("webhook body is not JSON") from None
        item = payload if isinstance(payload, Mapping) else {}
        data = item.get("data") if isinstance(item.get("data"), Mapping) else {}
        if isinstance(data.get("data"), Mapping):  # an envelope around a result item
            item, data = data, data["data"]
        number = item.get("trackingNumber") or data.get("trackingNumber")
        carrier = item.get("carrier") or data.get("carrier")
        if not number or not carrier or not data:
            raise WebhookTokenError("webhook body holds no parcel (carrier, trackingNumber, data)")
        parcel = Parcel(carrier=str(carrier), tracking_number=str(number))
        return self.read_item(parcel, self._result, parcel, data, item)


class WebhookTokenError(ValueError):
    """A WhereParcel webhook delivery whose per-connection token is missing or wrong."""


#: Item-level ``status`` words of the SDK's shape (``result.status === 'success'``).
_ITEM_OK = frozenset({"success", "succeeded", "ok"})
_ITEM_FAILED = frozenset({"failed", "failure", "error", "fail"})


def _succeeded(item: Mapping[str, Any]) -> bool:
    """
    Whether an item of ``results`` succeeded, in either documented shape: ``"success": true``
    (the response body sample) or ``"status": "success"`` (what the JavaScript sample reads).
    """
    flag = item.get("success")
    if isinstance(flag, bool):
        return flag
    status = str(item.get("status") or "").strip().lower()
    if status in _ITEM_FAILED:
        return False
    return status in _ITEM_OK or isinstance(item.get("data"), Mapping)


def _delivery_status(data: Mapping[str, Any]) -> Any:
    """The parcel's (or an event's) status word: ``deliveryStatus`` in the SDK's shape, else ``status``."""
    value = data.get("deliveryStatus")
    return value if value not in (None, "") else data.get("status")
