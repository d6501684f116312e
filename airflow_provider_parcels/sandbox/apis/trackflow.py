"""TrackFlow fake: ``GET /v2/track/{n}``, ``POST /v2/track/batch``, carriers and webhooks.

Event ``status`` holds a description text and ``type`` the event's kind (``transit`` for
in-transit scans, as in the doc's example); the quota counts items, not requests.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timezone

from ..outcomes import Tracking, digest
from ..wire import Request, Response, iso_z
from .base import Plan, SandboxApi, route

STATUS = {
    "pending": "pending",
    "info_received": "info_received",
    "in_transit": "in_transit",
    "out_for_delivery": "out_for_delivery",
    "failed_attempt": "failed_attempt",
    "available_for_pickup": "available_for_pickup",
    "delivered": "delivered",
    "exception": "exception",
    "expired": "exception",
    "unknown": "on_hold",
}
EVENT_TYPE = {**STATUS, "picked_up": "transit", "in_transit": "transit"}
NUMBER_FORMAT = re.compile(r"^[A-Za-z0-9-]{4,40}$")
CARRIERS = (
    {"code": "ups", "name": "UPS", "country": "US", "type": "express", "tracking_format": "^1Z[A-Z0-9]{16}$"},
    {"code": "fedex", "name": "FedEx", "country": "US", "type": "express", "tracking_format": "^[0-9]{12,15}$"},
    {"code": "usps", "name": "USPS", "country": "US", "type": "postal", "tracking_format": "^9[0-9]{19,21}$"},
    {"code": "dhl", "name": "DHL Express", "country": "DE", "type": "express", "tracking_format": "^[0-9]{10}$"},
    {"code": "royalmail", "name": "Royal Mail", "country": "GB", "type": "postal",
     "tracking_format": "^[A-Z]{2}[0-9]{9}GB$"},
    {"code": "indiapost", "name": "India Post EMS", "country": "IN", "type": "postal",
     "tracking_format": "^[A-Z]{2}[0-9]{9}[A-Z]{2}$"},
)
SERVICES = {"ups": "UPS Ground", "fedex": "FedEx Home Delivery", "usps": "USPS Priority Mail",
            "dhl": "DHL Express Worldwide", "royalmail": "Tracked 48", "indiapost": "Speed Post"}
WEBHOOK_EVENTS = {"delivered", "exception", "all"}
_BY_CODE = {carrier["code"]: carrier for carrier in CARRIERS}


def error(status: int, code: str, message: str) -> Response:
    """TrackFlow's error body."""
    return Response(status, {"success": False, "error": {"code": code, "message": message}})


def _not_found_error() -> dict:
    return {"code": "not_found", "message": "No tracking data found for this number."}


def _invalid_number_error() -> dict:
    return {"code": "invalid_tracking_number",
            "message": "The tracking number format is invalid for the specified carrier."}


def _shipments(request: Request) -> int:
    body = request.json_or_none()
    shipments = body.get("shipments") if isinstance(body, dict) else None
    return len(shipments) if isinstance(shipments, list) else 0


class TrackFlowApi(SandboxApi):
    """Header ``X-API-Key``; plans free/starter/growth/enterprise (10/60/300/unlimited items a minute,
    batches of 5/20/50/50)."""

    name = "trackflow"
    prefix = "/trackflow"
    plans = {"free": Plan(10, 5), "starter": Plan(60, 20), "growth": Plan(300, 50), "enterprise": Plan(None, 50)}
    max_batch = 50
    count_items = True
    usage_headers = ("remaining", "reset")
    routes = (
        route("GET", "/v2/track/{number}", "track_one", tracking=True),
        route("POST", "/v2/track/batch", "track_batch", items=_shipments, tracking=True),
        route("GET", "/v2/carriers", "carriers"),
        route("POST", "/v2/webhooks", "create_webhook"),
        route("DELETE", "/v2/webhooks/{webhook_id}", "delete_webhook"),
    )

    def reset(self) -> None:
        with self.lock:
            self.webhooks: dict[str, dict] = {}

    def key(self, request: Request) -> str | None:
        key = request.header("X-API-Key")
        return key if self.valid_key(key) else None

    def unauthorized(self, request: Request) -> Response:
        return error(401, "unauthorized", "Missing or invalid API key.")

    def not_found(self, request: Request) -> Response:
        return error(404, "not_found", f"No endpoint {request.method} {request.path}.")

    def rate_limited(self, request: Request, wait: float) -> Response:
        return error(429, "rate_limit_exceeded", "You have exceeded your plan's request quota.")

    def unavailable(self, request: Request) -> Response:
        return error(503, "carrier_unavailable", "The carrier's tracking API is temporarily unavailable.")

    # --- tracking -----------------------------------------------------------------------
    def _carrier(self, number: str, code: str | None) -> dict:
        code = (code or "").strip().lower()
        if code:
            return _BY_CODE.get(code, {"code": code, "name": code.upper(), "country": ""})
        for carrier in CARRIERS:
            if re.match(carrier["tracking_format"], number.upper()):
                return carrier
        return CARRIERS[digest(number)[13] % len(CARRIERS)]

    def _shape(self, number: str, carrier_code: str | None) -> dict:
        return self.shape(number, carrier_code)

    def shape(self, number: str, carrier_code: str | None, count: bool = True) -> dict:
        """The single-tracking answer of ``number`` (also the webhook body); ``count=False`` peeks."""
        carrier = self._carrier(number, carrier_code)
        tracking: Tracking = self.lookup(number, carrier.get("country") or None, count=count)
        if not tracking.found:
            return {"success": False, "tracking_number": number, "error": _not_found_error()}
        last = tracking.last
        now = datetime.fromtimestamp(int(time.time()) // 60 * 60, tz=timezone.utc)
        return {
            "success": True,
            "tracking_number": number,
            "carrier": {"code": carrier["code"], "name": carrier["name"],
                        "service": SERVICES.get(carrier["code"], "Standard")},
            "status": STATUS[tracking.outcome],
            "status_description": last.text if last else "Awaiting the first carrier scan",
            "estimated_delivery": iso_z(tracking.estimated_delivery),
            "origin": {"city": tracking.origin.city, "country": tracking.origin.country},
            "destination": {"city": tracking.destination.city, "country": tracking.destination.country},
            "events": [{"status": event.text, "location": event.place.label, "timestamp": iso_z(event.at),
                        "type": EVENT_TYPE[event.kind]} for event in tracking.events],
            "last_updated": iso_z(now),
        }

    def track_one(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``GET /v2/track/{number}?carrier=&lang=``."""
        number = params["number"]
        if not NUMBER_FORMAT.match(number):
            return Response(400, {"success": False, "error": _invalid_number_error()})
        shape = self._shape(number, request.query.get("carrier"))
        if not shape["success"]:
            return Response(404, {"success": False, "error": _not_found_error()})
        return Response(200, shape)

    def track_batch(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``POST /v2/track/batch`` with ``{"shipments": [{"tracking_number", "carrier"}]}``."""
        body = request.json_or_none()
        shipments = body.get("shipments") if isinstance(body, dict) else None
        if not isinstance(shipments, list) or not shipments:
            return error(400, "invalid_request", "shipments must be a non-empty array of {tracking_number, carrier}.")
        limit = self.batch_limit(key)
        if len(shipments) > limit:
            return error(400, "batch_too_large",
                         f"A batch holds at most {limit} shipments on your plan; got {len(shipments)}.")
        results = []
        for shipment in shipments:
            shipment = shipment if isinstance(shipment, dict) else {}
            number = str(shipment.get("tracking_number") or "")
            if not NUMBER_FORMAT.match(number):
                results.append({"success": False, "tracking_number": number, "error": _invalid_number_error()})
                continue
            carrier = shipment.get("carrier")
            results.append(self._shape(number, carrier if isinstance(carrier, str) else None))
        return Response(200, {"success": True, "count": len(results), "results": results})

    def carriers(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``GET /v2/carriers``."""
        return Response(200, {"count": len(CARRIERS), "carriers": [dict(carrier) for carrier in CARRIERS]})

    # --- webhooks -----------------------------------------------------------------------
    def create_webhook(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``POST /v2/webhooks``."""
        body = request.json_or_none()
        body = body if isinstance(body, dict) else {}
        number, url = body.get("tracking_number"), body.get("url")
        events = body.get("events", ["all"])
        if not isinstance(number, str) or not NUMBER_FORMAT.match(number):
            return Response(400, {"success": False, "error": _invalid_number_error()})
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return error(400, "invalid_request", "url is required and must be an HTTPS URL.")
        if not isinstance(events, list) or not events or not set(events) <= WEBHOOK_EVENTS:
            return error(400, "invalid_request", "events must be a list of: delivered, exception, all.")
        hook = {"success": True, "id": f"wh_{uuid.uuid4().hex[:20]}", "tracking_number": number, "url": url,
                "events": events}
        with self.lock:
            self.webhooks[hook["id"]] = hook
        return Response(201, hook)

    def delete_webhook(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``DELETE /v2/webhooks/{webhook_id}``."""
        with self.lock:
            found = self.webhooks.pop(params["webhook_id"], None)
        return Response(204) if found else error(404, "not_found", "No webhook with this ID.")
