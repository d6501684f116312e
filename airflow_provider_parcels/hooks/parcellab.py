"""
parcelLab (v4): orders with their trackings. ``GET /v4/track/orders/{id}/`` answers one
order, the cursor-paged ``GET /v4/track/orders/`` lists them, ``PUT /v4/track/orders/`` is
the idempotent create-or-update; ``Authorization: Bearer TOKEN``.

Choices: the doc leaves the host blank; the default is ``https://api.parcellab.com``. A
parcel is looked up by its ``client_id`` (the order number or external reference) or, if
none, by its tracking number read as the order id; the order's tracking with the same
number is the answer (else its only, or first, tracking). The status is the newest
checkpoint's ``status_code`` (no documented vocabulary: the map accepts the usual words);
an order without trackings or checkpoints is ``pending``. ``PUT`` answers 201 on create
and 200 (or 204, the doc's "no content") on update; a cursor's ``next`` link is followed
only on the connection's own host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from airflow_provider_parcels.hooks.base import ParcelTrackingHook
from airflow_provider_parcels.hooks.exceptions import RequestRejected, RetryableApiError
from airflow_provider_parcels.hooks.parsing import (
    StatusMap,
    dedupe_events,
    first_event_at,
    make_event,
    parse_utc,
    text,
)
from airflow_provider_parcels.hooks.trackingmore import CreateResult
from airflow_provider_parcels.hooks.transport import ApiRequest
from airflow_provider_parcels.models import Parcel, ParcelStatus, TrackingResult

S = ParcelStatus
PARCELLAB_STATUS = StatusMap(
    "parcelLab",
    {
        "Pending": S.PENDING,
        "OrderProcessed": S.INFO_RECEIVED,
        "InfoReceived": S.INFO_RECEIVED,
        "InboundScan": S.IN_TRANSIT,
        "Upgrade": S.IN_TRANSIT,
        "InTransit": S.IN_TRANSIT,
        "InTransport": S.IN_TRANSIT,
        "OutForDelivery": S.OUT_FOR_DELIVERY,
        "FailedAttempt": S.FAILED_ATTEMPT,
        "DeliveryFailed": S.FAILED_ATTEMPT,
        "PickupReady": S.AVAILABLE_FOR_PICKUP,
        "PickUpReady": S.AVAILABLE_FOR_PICKUP,
        "Delivered": S.DELIVERED,
        "Exception": S.EXCEPTION,
        "Returned": S.EXCEPTION,
        "Expired": S.EXPIRED,
    },
)
#: The doc's pattern for an order's unique id in the URL.
UNIQUE_ID = re.compile(r"^(?!info)[^/.]+$")


class ParcelLabHook(ParcelTrackingHook):
    """
    Hook for the parcelLab v4 track API.

    The connection's password holds the token; extras ``account`` (added to orders that
    have none), ``requests_per_minute``, ``max_concurrency``, ``timeout``.

    :param conn_id: the Airflow connection, default ``parcellab_default``.
    """

    conn_type = "parcellab"
    default_conn_name = "parcellab_default"
    hook_name = "parcelLab"
    provider = "parcellab"
    default_base_url = "https://api.parcellab.com"
    max_batch_size = 1
    required_credentials = (("password", "token"),)
    status_map = PARCELLAB_STATUS
    test_request = ApiRequest("GET", "/v4/track/orders/", params={"page_size": 1})

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._password}"}

    @property
    def account(self) -> Any:
        _ = self.settings
        return self._extra.get("account")

    def build_batch_request(self, parcels: Sequence[Parcel]) -> ApiRequest:
        (parcel,) = parcels
        order_id = parcel.client_id or parcel.tracking_number
        return ApiRequest("GET", f"/v4/track/orders/{quote(order_id, safe='')}/", parcels=(parcel,))

    def parse_track_response(self, request: ApiRequest, body: Any) -> list[TrackingResult]:
        (parcel,) = request.parcels
        trackings = [t for t in body.get("trackings") or () if isinstance(t, Mapping)]
        match = next((t for t in trackings if str(t.get("tracking_number", "")).upper()
                      == parcel.tracking_number.upper()), None)
        tracking = match or (trackings[0] if trackings else {})
        events = dedupe_events(
            make_event(
                when=c.get("event_timestamp"),
                status=self.status_map(c.get("status_code")),
                provider_status=c.get("status_code"),
                description=c.get("message") or c.get("courier_status"),
                location=c.get("delivery_location"),
                raw=c,
            )
            for c in tracking.get("checkpoints") or ()
            if isinstance(c, Mapping)
        )
        newest = events[0] if events else None
        status = newest.status if newest else S.PENDING
        return [
            self.result(
                parcel,
                status=status,
                provider_status=newest.provider_status if newest else None,
                status_text=newest.description if newest else text(body.get("order_status")),
                carrier_name=text(tracking.get("courier")),
                estimated_delivery=parse_utc(tracking.get("announced_delivery_date")
                                             or body.get("announced_delivery_date")),
                delivered_at=first_event_at(events, S.DELIVERED) if status is S.DELIVERED else None,
                destination_country=text(tracking.get("destination_country_iso3")
                                         or body.get("destination_country_iso3")),
                origin_country=text(tracking.get("origin_country_iso3")),
                events=events,
                raw=body,
            )
        ]

    # ------------------------------------------------------------------ orders

    def get_order(self, unique_id: str) -> dict[str, Any] | None:
        """
        One order with its trackings, or ``None`` when parcelLab has no such order.

        :param unique_id: the order number or external reference.
        """
        if not isinstance(unique_id, str) or not UNIQUE_ID.match(unique_id):
            raise ValueError(f"order id {unique_id!r} must match {UNIQUE_ID.pattern}")
        response = self.call(ApiRequest("GET", f"/v4/track/orders/{quote(unique_id, safe='')}/"))
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise RequestRejected(response.status_code, "bad_request",
                                  f"parcelLab answered HTTP {response.status_code}")
        return response.json()

    def list_orders(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """
        Every order, following the cursor's ``next`` link to the end.

        :param filters: query parameters of the list call (e.g. ``ordering``, ``page_size``).
        """
        request = ApiRequest("GET", "/v4/track/orders/", params=filters or None)
        while True:
            response = self.call(request)
            if response.status_code >= 400:
                raise RequestRejected(response.status_code, "bad_request",
                                      f"parcelLab answered HTTP {response.status_code} listing orders")
            body = response.json()
            yield from (r for r in body.get("results") or () if isinstance(r, Mapping))
            next_url = body.get("next")
            if not next_url:
                return
            request = ApiRequest("GET", self._same_host_path(str(next_url)))

    def _same_host_path(self, url: str) -> str:
        base, link = urlsplit(self.settings.base_url), urlsplit(url)
        if link.netloc and link.netloc != base.netloc:
            raise RequestRejected(400, "bad_request", f"parcelLab sent a next link to another host: {link.netloc}")
        path = link.path
        if base.path and path.startswith(base.path):
            path = path[len(base.path):]
        return path + (f"?{link.query}" if link.query else "")

    def upsert_orders(self, orders: Sequence[Mapping[str, Any]]) -> list[CreateResult]:
        """
        Create or update orders with the idempotent ``PUT /v4/track/orders/``, one call per
        order: ``created`` on 201, ``updated`` on 200/204, else ``error`` with the reason.
        A retried task or a retried call never creates an order twice.

        :param orders: order payloads as the doc describes (``account`` is taken from the
            connection's extra when missing).
        """
        out = []
        for order in orders:
            body = dict(order)
            if body.get("account") is None and self.account is not None:
                body["account"] = int(self.account) if str(self.account).isdigit() else self.account
            key = str(body.get("order_number") or body.get("external_reference") or "")
            try:
                response = self.call(ApiRequest("PUT", "/v4/track/orders/", json=body))
            except RetryableApiError as err:
                out.append(CreateResult(key, "error", f"{err.message} (after retries)"))
                continue
            code = response.status_code
            if code == 201:
                out.append(CreateResult(key, "created", status_code=code))
            elif code in (200, 204):
                out.append(CreateResult(key, "updated", status_code=code))
            else:
                detail = self._validation_message(response)
                out.append(CreateResult(key, "error", f"HTTP {code}: {detail}", status_code=code))
        return out

    def _validation_message(self, response: Any) -> str:
        try:
            body = response.json()
        except RetryableApiError:
            return "unreadable answer"
        if isinstance(body, Mapping):
            if "detail" in body:
                return str(body["detail"])
            return "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in body.items())
        return str(body)[:200]
