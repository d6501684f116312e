"""WhereParcel fake: ``POST /v2/track`` (up to 5 items) and ``POST /v2/webhooks/register``.

The doc shows two shapes of a result item: the response body sample (``"success": true``,
``data.status``) and the one its JavaScript sample reads (``result.status === 'success'``,
``result.data.deliveryStatus``). The fake answers the first; a key containing ``-sdk``
(``sandbox-sdk``, ``sandbox-sdk-pro``) gets the second (``"status": "success"`` or
``"failed"``, ``data.deliveryStatus``), so clients can be tested against both.
"""

from __future__ import annotations

import uuid

from ..outcomes import Event, Tracking
from ..places import EVENT_TEXTS_KO, carrier_info
from ..wire import Request, Response, iso_offset
from .base import Plan, SandboxApi, count_list, route

#: canonical outcome / event kind -> WhereParcel status word
STATUS = {
    "pending": "pending",
    "info_received": "info_received",
    "picked_up": "picked_up",
    "in_transit": "in_transit",
    "out_for_delivery": "out_for_delivery",
    "failed_attempt": "delivery_failed",
    "available_for_pickup": "ready_for_pickup",
    "delivered": "delivered",
    "exception": "exception",
    "expired": "exception",
    "unknown": "on_hold",
}
#: parcel-level status texts (events carry their own)
STATUS_TEXT = {
    "pending": ("Pending", "접수 대기"),
    "info_received": ("Information received", "접수"),
    "picked_up": ("Picked up", "집하"),
    "in_transit": ("In transit", "배송 중"),
    "out_for_delivery": ("Out for delivery", "배달 출발"),
    "delivery_failed": ("Delivery failed", "미배달"),
    "ready_for_pickup": ("Ready for pickup", "보관 중"),
    "delivered": ("Delivered", "배달완료"),
    "exception": ("Exception", "배송 이상"),
    "on_hold": ("On hold", "보류"),
}
_KO_DELIVERED = "고객님께 배달이 완료되었습니다"
_DESCRIBED = {"delivered", "failed_attempt", "exception", "expired", "available_for_pickup"}


def _error(status: int, code: str, message: str) -> Response:
    return Response(status, {"success": False, "error": {"code": code, "message": message}})


class WhereParcelApi(SandboxApi):
    """``Authorization: Bearer KEY:SECRET``; plans free/starter/pro/business, batch 5."""

    name = "whereparcel"
    prefix = "/whereparcel"
    plans = {"free": Plan(1, 5), "starter": Plan(30, 5), "pro": Plan(60, 5), "business": Plan(200, 5)}
    max_batch = 5
    usage_headers = ("limit", "remaining", "reset")
    routes = (
        route("POST", "/v2/track", "track", items=count_list("trackingItems"), tracking=True),
        route("POST", "/v2/webhooks/register", "register_webhook"),
    )

    def reset(self) -> None:
        with self.lock:
            self.webhooks: dict[str, dict] = {}

    def key(self, request: Request) -> str | None:
        scheme, _, credentials = request.header("Authorization").partition(" ")
        key, sep, secret = credentials.strip().partition(":")
        if scheme.lower() != "bearer" or not sep or not key or not secret or not self.valid_key(key):
            return None
        return key

    def unauthorized(self, request: Request) -> Response:
        return _error(401, "UNAUTHORIZED", "Invalid or missing API key")

    def not_found(self, request: Request) -> Response:
        return _error(404, "NOT_FOUND", f"Cannot {request.method} {request.path}")

    def rate_limited(self, request: Request, wait: float) -> Response:
        return _error(429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded. Please try again later.")

    def unavailable(self, request: Request) -> Response:
        return _error(503, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable. Please retry.")

    # --- endpoints ---------------------------------------------------------------------
    def track(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``POST /v2/track``."""
        try:
            body = request.json()
        except ValueError:
            return _error(400, "VALIDATION_ERROR", "Request body must be valid JSON")
        items = body.get("trackingItems") if isinstance(body, dict) else None
        if not isinstance(items, list):
            return _error(400, "VALIDATION_ERROR", "trackingItems must be an array")
        if not items:
            return _error(400, "VALIDATION_ERROR", "trackingItems must contain at least 1 item")
        limit = self.batch_limit(key)
        if len(items) > limit:
            return _error(400, "TOO_MANY_ITEMS", f"trackingItems must contain at most {limit} items")
        for index, item in enumerate(items):
            for field in ("carrier", "trackingNumber"):
                value = item.get(field) if isinstance(item, dict) else None
                if not isinstance(value, str) or not value.strip():
                    return _error(400, "VALIDATION_ERROR", f"trackingItems[{index}].{field} is required")
        results = [self._result(item) for item in items]
        succeeded = sum(1 for result in results if result["success"])
        if "-sdk" in key:
            results = [_sdk_shape(result) for result in results]
        summary = {"total": len(results), "succeeded": succeeded, "failed": len(results) - succeeded}
        return Response(200, {"success": True, "summary": summary, "results": results})

    def _result(self, item: dict) -> dict:
        return self.result_item(item)

    def result_item(self, item: dict, count: bool = True) -> dict:
        """One ``results`` entry for ``{"carrier", "trackingNumber"}`` (also the webhook body's);
        ``count=False`` peeks."""
        carrier, number = item["carrier"], item["trackingNumber"]
        result: dict = {"carrier": carrier, "trackingNumber": number}
        if item.get("clientId") is not None:
            result["clientId"] = item["clientId"]
        info = carrier_info(carrier)
        tracking = self.lookup(number, info.country or None, count=count)
        if not tracking.found:
            result.update(success=False, error={"code": "NOT_FOUND", "message": "No tracking information found"})
            return result
        korean = info.country == "KR"
        status = self._status(tracking)
        result.update(success=True, data={
            "carrier": carrier,
            "carrierName": info.name,
            "trackingNumber": number,
            "status": status,
            "statusText": STATUS_TEXT[status][1 if korean else 0],
            "events": [self._event(event, korean) for event in tracking.events],
        })
        return result

    @staticmethod
    def _status(tracking: Tracking) -> str:
        last = tracking.last
        if tracking.outcome == "in_transit" and last is not None and last.kind == "picked_up":
            return "picked_up"
        return STATUS[tracking.outcome]

    @staticmethod
    def _event(event: Event, korean: bool) -> dict:
        text = EVENT_TEXTS_KO[event.kind] if korean else event.text
        entry = {
            "timestamp": iso_offset(event.at, event.place.offset_minutes),
            "status": STATUS[event.kind],
            "statusText": text,
            "location": event.place.city if korean else event.place.label,
        }
        if event.kind in _DESCRIBED:
            entry["description"] = _KO_DELIVERED if korean and event.kind == "delivered" else text
        return entry

    def register_webhook(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``POST /v2/webhooks/register``."""
        body = request.json_or_none()
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return _error(400, "VALIDATION_ERROR", "url is required and must be an http(s) URL")
        recurring = body.get("recurring", False)
        if not isinstance(recurring, bool):
            return _error(400, "VALIDATION_ERROR", "recurring must be a boolean")
        hook_id = f"wh_{uuid.uuid4().hex[:16]}"
        hook = {"id": hook_id, "url": url, "recurring": recurring}
        carrier, number = body.get("carrier"), body.get("trackingNumber")
        if isinstance(carrier, str) and isinstance(number, str) and number.strip():
            hook.update(carrier=carrier, trackingNumber=number)  # one parcel; else every parcel of the account
        with self.lock:
            self.webhooks[hook_id] = hook
        return Response(200, {"success": True, "data": {"id": hook_id, "url": url, "recurring": recurring}})


def _sdk_shape(result: dict) -> dict:
    """An item in the shape the doc's JavaScript sample reads: ``status`` and ``data.deliveryStatus``."""
    out = {k: v for k, v in result.items() if k not in ("success", "data")}
    out["status"] = "success" if result["success"] else "failed"
    if "data" in result:
        data = dict(result["data"])
        data["deliveryStatus"] = data.pop("status")
        out["data"] = data
    return out
