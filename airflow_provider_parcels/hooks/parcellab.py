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

from tenacity import Retrying

from airflow_provider_parcels.hooks.base import ParcelTrackingHook, invalid_input_key
from airflow_provider_parcels.hooks.exceptions import RequestRejected, RetryableApiError
from airflow_provider_parcels.hooks.parsing import (
    StatusMap,
    dedupe_events,
    first_event_at,
    make_event,
    parse_utc,
    text,
)
from airflow_provider_parcels.hooks.trackingmore import MAYBE_LANDED, CreateResult
from airflow_provider_parcels.hooks.transport import ApiRequest, ApiResponse
from airflow_provider_parcels.models import InvalidParcelError, Parcel, ParcelStatus, TrackingResult

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

    @staticmethod
    def order_id(item: Parcel | TrackingResult) -> str:
        """The order a parcel is looked up by: its ``client_id``, else its tracking number."""
        return item.client_id or item.tracking_number

    def validate_parcel(self, parcel: Parcel, index: int | None = None) -> None:
        """
        The order id goes into the URL path: it must match the doc's ``^(?!info)[^/.]+$`` (``.``
        or ``..`` would turn the order URL into the order list, or another path).

        :param parcel: the parcel.
        :param index: its position in the input, for the message.
        :raises InvalidParcelError: when the order id cannot name an order.
        """
        order_id = self.order_id(parcel)
        if not UNIQUE_ID.match(order_id):
            where = f"parcel #{index}" if index is not None else "parcel"
            field = "client_id" if parcel.client_id else "tracking_number"
            raise InvalidParcelError(
                f"{where} (tracking_number={parcel.tracking_number!r}): {field} {order_id!r} cannot identify a "
                f"parcelLab order (the order id must match {UNIQUE_ID.pattern}: no '/', no '.', not starting "
                f"with 'info')"
            )

    def answer_key(self, item: Parcel | TrackingResult) -> tuple[str, ...]:
        """Tracking number and order: two orders sharing a tracking number are two questions."""
        return (*super().answer_key(item), self.order_id(item))

    def build_batch_request(self, parcels: Sequence[Parcel]) -> ApiRequest:
        (parcel,) = parcels
        order_id = self.order_id(parcel)
        if not UNIQUE_ID.match(order_id):  # plan_chunk refuses these; never send one
            raise InvalidParcelError(f"order id {order_id!r} must match {UNIQUE_ID.pattern}")
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

        The ``PUT`` is retried after a timeout, a reset or a 5xx, and such a failed attempt may
        have been carried out by parcelLab: a retry answering 200 then cannot tell whether that
        attempt created the order or it existed before, and the outcome is
        ``created_or_updated`` (a 201 still means created, by the retry).

        :param orders: order payloads as the doc describes (``account`` is taken from the
            connection's extra when missing).
        """
        out = []
        for order in orders:
            body = dict(order)
            if body.get("account") is None and self.account is not None:
                body["account"] = int(self.account) if str(self.account).isdigit() else self.account
            key = str(body.get("order_number") or body.get("external_reference") or "") or invalid_input_key(order)
            attempts: list[str] = []
            try:
                response = self._put_order(body, attempts)
            except RetryableApiError as err:
                landed = [code for code in attempts if code in MAYBE_LANDED]
                maybe = (f"; an attempt ({landed[0]}) may have been carried out: the order may exist, and "
                         f"sending it again is safe (the PUT is idempotent)") if landed else ""
                out.append(CreateResult(key, "error", f"{err.message} (after retries){maybe}"))
                continue
            code = response.status_code
            landed = [code for code in attempts if code in MAYBE_LANDED]
            if code == 201:
                out.append(CreateResult(key, "created", status_code=code))
            elif code in (200, 204) and landed:
                out.append(CreateResult(
                    key, "created_or_updated",
                    f"an earlier attempt got no usable answer ({landed[0]}) and may have created the order; "
                    f"the retry found it (HTTP {code})", status_code=code))
            elif code in (200, 204):
                out.append(CreateResult(key, "updated", status_code=code))
            else:
                detail = self._validation_message(response)
                out.append(CreateResult(key, "error", f"HTTP {code}: {detail}", status_code=code))
        return [self.redact_value(r) for r in out]

    def _put_order(self, body: Mapping[str, Any], attempts: list[str]) -> ApiResponse:
        """
        One order's ``PUT`` with the retry policy (idempotent: safe to repeat).

        :param body: the order.
        :param attempts: filled with the error code of each failed attempt, so the caller can
            tell whether one may have been carried out.
        """
        request = ApiRequest("PUT", "/v4/track/orders/", json=body)
        for attempt in Retrying(**self.settings.retry.tenacity_kwargs(self._on_retry)):
            with attempt:
                try:
                    response = self.send(request)
                    self.raise_for_retry(response)
                except RetryableApiError as err:
                    attempts.append(err.code)
                    raise
                return response
        raise AssertionError("unreachable")

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
