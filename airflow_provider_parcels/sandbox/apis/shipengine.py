"""ShipEngine fake: ``GET /v1/tracking?carrier_code=&tracking_number=`` (and ``GET /v1/carriers``).

Events carry ``occurred_at`` in UTC and ``carrier_occurred_at`` as a zone-less local time; an
event's ``status_code`` is always null or "" (only the shipment has one). ShipEngine has no
out-for-delivery code: such parcels are ``IT`` with a newest event "Out for Delivery".
"""

from __future__ import annotations

import uuid
from functools import lru_cache

from ..outcomes import Event, digest
from ..wire import Request, Response, iso_z, local_naive
from .base import Plan, SandboxApi, route

STATUS = {
    "pending": ("NY", "Not Yet In System"),
    "info_received": ("AC", "Accepted"),
    "in_transit": ("IT", "In Transit"),
    "out_for_delivery": ("IT", "In Transit"),
    "failed_attempt": ("AT", "Delivery Attempt"),
    "available_for_pickup": ("SP", "Delivered To The Collection Location"),
    "delivered": ("DE", "Delivered"),
    "exception": ("EX", "Exception"),
    "expired": ("EX", "Exception"),
    "unknown": ("UN", "Unknown"),
}
#: requested carrier_code -> (carrier_id, carrier_code answered, friendly name, country)
CARRIERS = {
    "usps": (1, "usps", "U.S. Postal Service", "US"),
    "stamps_com": (1, "usps", "Stamps.com", "US"),
    "ups": (2, "ups", "UPS", "US"),
    "fedex": (3, "fedex", "FedEx", "US"),
    "dhl_express": (4, "dhl_express", "DHL Express", "DE"),
    "canada_post": (5, "canada_post", "Canada Post", ""),
    "australia_post": (6, "australia_post", "Australia Post", ""),
}
TRACKING_URLS = {
    "usps": "https://tools.usps.com/go/TrackConfirmAction.action?tLabels={n}",
    "ups": "https://www.ups.com/track?tracknum={n}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={n}",
    "dhl_express": "https://www.dhl.com/en/express/tracking.html?AWB={n}",
}


def errors(status: int, error_type: str, error_code: str, *messages: str) -> Response:
    """ShipEngine's error body, one entry per message."""
    return Response(status, {
        "request_id": str(uuid.uuid4()),
        "errors": [{"error_source": "shipengine", "error_type": error_type, "error_code": error_code,
                    "message": message} for message in messages],
    })


class ShipEngineApi(SandboxApi):
    """Header ``API-Key``; plan ``advanced`` = 200/min; one parcel per call."""

    name = "shipengine"
    prefix = "/shipengine"
    plans = {"advanced": Plan(200, 1)}
    routes = (
        route("GET", "/v1/tracking", "track", tracking=True),
        route("GET", "/v1/carriers", "carriers"),
    )

    def key(self, request: Request) -> str | None:
        key = request.header("API-Key")
        return key if self.valid_key(key) else None

    def unauthorized(self, request: Request) -> Response:
        return errors(401, "security", "unauthorized",
                      "The API key is invalid. Please see https://www.shipengine.com/docs/auth")

    def not_found(self, request: Request) -> Response:
        return errors(404, "business_rules", "not_found", f"No resource at {request.method} {request.path}.")

    def rate_limited(self, request: Request, wait: float) -> Response:
        return errors(429, "system", "rate_limit_exceeded",
                      "You have exceeded the rate limit. Please see https://www.shipengine.com/docs/rate-limits")

    def unavailable(self, request: Request) -> Response:
        return errors(503, "system", "unspecified", "The service is temporarily unavailable. Please try again.")

    def bad_json(self) -> bytes:
        return b'{"tracking_number": "9405511899223197428490", "status_code": "IT", "events": [{"occurred_at": "'

    def track(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``GET /v1/tracking``."""
        carrier_code = request.query.get("carrier_code", "").strip().lower()
        number = request.query.get("tracking_number", "").strip()
        missing = [f"{name} is required." for name, value in (("carrier_code", carrier_code),
                                                              ("tracking_number", number)) if not value]
        if missing:
            return errors(400, "validation", "invalid_field_value", *missing)
        default = (100 + digest(carrier_code)[0], carrier_code, carrier_code, "")
        carrier_id, answered_code, _, country = CARRIERS.get(carrier_code, default)
        tracking = self.lookup(number, country or None)
        if not tracking.found:
            return errors(404, "business_rules", "not_found",
                          f"No tracking information found for {number} ({carrier_code}).")
        code, description = STATUS[tracking.outcome]
        last = tracking.last
        oldest = tracking.events[-1] if tracking.events else None
        url = TRACKING_URLS.get(answered_code)
        return Response(200, {
            "tracking_number": number,
            "tracking_url": url.format(n=number) if url else None,
            "status_code": code,
            "carrier_code": answered_code,
            "carrier_id": carrier_id,
            "carrier_detail_code": None,
            "status_description": description,
            "carrier_status_code": last.code if last else None,
            "carrier_status_description": last.text if last else None,
            "ship_date": iso_z(oldest.at) if oldest else None,
            "estimated_delivery_date": iso_z(tracking.estimated_delivery),
            "actual_delivery_date": iso_z(tracking.delivered_at),
            "exception_description": last.text if last and tracking.outcome in ("exception", "expired") else None,
            "events": [_event(event, index) for index, event in enumerate(tracking.events)],
        })

    def carriers(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``GET /v1/carriers``: the carriers connected to the sandbox account."""
        seen, listed = set(), []
        for carrier_id, code, name, _country in CARRIERS.values():
            if code not in seen:
                seen.add(code)
                listed.append({"carrier_id": f"se-{carrier_id}", "carrier_code": code, "friendly_name": name,
                               "nickname": name, "primary": code == "usps"})
        return Response(200, {"carriers": listed, "request_id": str(uuid.uuid4()), "errors": []})


@lru_cache(maxsize=8192)
def _event(event: Event, index: int) -> dict:
    """One event (cached: events are immutable and answers only serialize these dicts)."""
    place = event.place
    return {
        "occurred_at": iso_z(event.at),
        "carrier_occurred_at": local_naive(event.at, place.offset_minutes),
        "description": event.text,
        "city_locality": place.city.upper(),
        "state_province": place.region,
        "postal_code": place.postal,
        "country_code": place.country,
        "company_name": "",
        "signer": "",
        "event_code": event.code,
        "carrier_detail_code": None,
        "status_code": None if index % 2 == 0 else "",
        "status_description": None,
        "carrier_status_code": event.code,
        "carrier_status_description": event.text,
        "latitude": place.lat,
        "longitude": place.lon,
    }
