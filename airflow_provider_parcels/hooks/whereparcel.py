"""
WhereParcel: ``POST /v2/track`` with up to 5 parcels, per-item success or failure inside
one HTTP 200 answer, ``Authorization: Bearer KEY:SECRET``.

Choices where the documentation is loose: ``trackingItems`` is always sent as an array (the
doc's Python sample sends an object keyed ``"0"``, ``"1"``; its other samples and the field
table say array); ``picked_up`` counts as in transit; a failed item whose error code reads
as not-found gives status ``not_found``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_parcels.hooks.base import ParcelTrackingHook
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
            if item.get("success") is False or not data:
                error = item.get("error") if isinstance(item.get("error"), Mapping) else {}
                code = str(error.get("code") or "tracking_failed")
                message = str(error.get("message") or "WhereParcel could not track this parcel")
                code = "not_found" if "NOT_FOUND" in code.upper() else code.lower()
                out.append(self.failure(parcel, code, message, raw=item))
                continue
            out.append(self._result(parcel, data, item))
        return out

    def _result(self, parcel: Parcel, data: Mapping[str, Any], item: Mapping[str, Any]) -> TrackingResult:
        events = dedupe_events(
            make_event(
                when=e.get("timestamp"),
                status=self.status_map(e.get("status")),
                provider_status=e.get("status"),
                description=e.get("description") or e.get("statusText"),
                location=e.get("location"),
                raw=e,
            )
            for e in data.get("events") or ()
            if isinstance(e, Mapping)
        )
        status = self.status_map(data.get("status"))
        return self.result(
            parcel,
            status=status,
            provider_status=text(data.get("status")),
            status_text=text(data.get("statusText")),
            carrier_name=text(data.get("carrierName")),
            delivered_at=first_event_at(events, S.DELIVERED) if status is S.DELIVERED else None,
            events=events,
            raw=item,
        )

    def register_webhook(self, url: str, *, recurring: bool = True, parcel: Parcel | None = None) -> dict:
        """
        Subscribe ``url`` to status changes (``POST /v2/webhooks/register``), sent once.

        :param url: your HTTPS endpoint.
        :param recurring: keep notifying on every change.
        :param parcel: limit the subscription to one parcel.
        """
        body: dict[str, Any] = {"url": url, "recurring": recurring}
        if parcel is not None:
            body.update(carrier=parcel.carrier, trackingNumber=parcel.tracking_number)
        response = self.send(ApiRequest("POST", "/v2/webhooks/register", json=body))
        self.raise_for_retry(response)
        if response.status_code >= 400:
            raise ValueError(f"WhereParcel refused the webhook: {self.error_message(response.json())}")
        return response.json()
