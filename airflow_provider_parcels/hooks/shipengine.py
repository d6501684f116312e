"""
ShipEngine: ``GET /v1/tracking?carrier_code=&tracking_number=``, one parcel per call,
``API-Key`` header.

Traps handled: ``NY`` (not yet in system) is pending although the doc's label column says
in_transit; ``SP`` is a pickup point, not delivered; an event's ``status_code`` is often
``null`` or ``""`` and is then no status; ``carrier_occurred_at`` is a zone-less local time
kept as written, ``occurred_at`` is UTC. ShipEngine has no out-for-delivery code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_parcels.hooks.base import ParcelTrackingHook
from airflow_provider_parcels.hooks.parsing import StatusMap, dedupe_events, make_event, parse_utc, text
from airflow_provider_parcels.hooks.settings import Plan
from airflow_provider_parcels.hooks.transport import ApiRequest
from airflow_provider_parcels.models import Parcel, ParcelStatus, TrackingError, TrackingResult

S = ParcelStatus
SHIPENGINE_STATUS = StatusMap(
    "ShipEngine",
    {
        "AC": S.INFO_RECEIVED,
        "IT": S.IN_TRANSIT,
        "DE": S.DELIVERED,
        "EX": S.EXCEPTION,
        "UN": S.UNKNOWN,
        "AT": S.FAILED_ATTEMPT,
        "NY": S.PENDING,
        "SP": S.AVAILABLE_FOR_PICKUP,
    },
)


class ShipEngineHook(ParcelTrackingHook):
    """
    Hook for the ShipEngine tracking endpoint (Advanced plan or higher).

    The connection's password holds the API key; extras ``plan`` (``advanced``: 200
    requests/min), ``requests_per_minute``, ``max_concurrency``, ``timeout``.

    :param conn_id: the Airflow connection, default ``shipengine_default``.
    """

    conn_type = "shipengine"
    default_conn_name = "shipengine_default"
    hook_name = "ShipEngine"
    provider = "shipengine"
    default_base_url = "https://api.shipengine.com"
    plans = {"advanced": Plan(200, 1)}
    max_batch_size = 1
    status_map = SHIPENGINE_STATUS
    # Without parameters the call is authenticated and refused as a bad request (400): no lookup.
    test_request = ApiRequest("GET", "/v1/tracking")
    test_accept = (200, 400)

    def auth_headers(self) -> dict[str, str]:
        return {"API-Key": str(self._password)}

    def build_batch_request(self, parcels: Sequence[Parcel]) -> ApiRequest:
        (parcel,) = parcels
        params = {"carrier_code": parcel.carrier, "tracking_number": parcel.tracking_number}
        return ApiRequest("GET", "/v1/tracking", params=params, parcels=(parcel,))

    def error_message(self, body: Any) -> str | None:
        if isinstance(body, Mapping) and isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            if isinstance(first, Mapping):
                return str(first.get("message") or first.get("error_code") or "")
        return super().error_message(body)

    def parse_track_response(self, request: ApiRequest, body: Any) -> list[TrackingResult]:
        (parcel,) = request.parcels
        if not isinstance(body, Mapping):
            raise TypeError(f"the answer is a {type(body).__name__}, not an object")
        raw_events = body.get("events")
        events = dedupe_events(self._event(e) for e in raw_events or () if isinstance(e, Mapping)) \
            if isinstance(raw_events, list) else ()
        code = text(body.get("status_code"))
        error = None
        if code is None:
            # A well-formed 200 without a parcel status (real UPS answers): the newest event
            # that has a status gives it; without one it is one error row. Never retried.
            newest = next((e for e in events if e.status is not S.UNKNOWN), None)
            if newest is not None:
                code = newest.provider_status
            else:
                error = TrackingError(
                    "malformed_response",
                    "ShipEngine answered without a status_code and no event has one"
                    + (f" ({len(events)} events kept)" if events else ""),
                )
        status = self.status_map(code)
        return [
            self.result(
                parcel,
                status=status,
                provider_status=code,
                error=error,
                status_text=text(body.get("status_description")),
                carrier_name=text(body.get("carrier_code")),
                estimated_delivery=parse_utc(body.get("estimated_delivery_date")),
                delivered_at=parse_utc(body.get("actual_delivery_date"))
                or (events[0].occurred_at if status is S.DELIVERED and events else None),
                events=events,
                raw=body,
            )
        ]

    def _event(self, e: Mapping[str, Any]) -> Any:
        place = ", ".join(
            str(e[k]).strip()
            for k in ("city_locality", "state_province", "postal_code", "country_code")
            if e.get(k) not in (None, "")
        )
        code = text(e.get("status_code"))
        return make_event(
            when=e.get("occurred_at") or e.get("carrier_occurred_at"),
            local=e.get("carrier_occurred_at"),
            status=self.status_map(code) if code else S.UNKNOWN,
            provider_status=code or text(e.get("carrier_status_code")),
            description=e.get("description") or e.get("carrier_status_description"),
            location=place,
            raw=e,
        )
