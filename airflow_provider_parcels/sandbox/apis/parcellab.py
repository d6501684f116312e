"""parcelLab v4 fake: orders with trackings, Django-REST-framework style errors and cursor paging.

``PUT /v4/track/orders/`` upserts (201 created, 200 updated), ``POST`` creates (400 if the order
exists), ``GET /v4/track/orders/`` lists with a cursor, ``GET /v4/track/orders/{id}/`` returns
an order. The store starts with 120 demo orders ``PL-DEMO-0001``..``0120``; an id that is not
stored gets a synthesized order whose one tracking has that number (unless it is ``NFD...``).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlencode

from ..outcomes import Tracking, classify, day_start
from ..places import COUNTRIES, carrier_info
from ..wire import Request, Response, iso_z
from .base import SandboxApi, route
from .parcellab_schema import ORDER_FIELDS, TRACKING_FIELDS, validate

STATUS_CODE = {
    "pending": "Pending",
    "info_received": "OrderProcessed",
    "picked_up": "InTransit",
    "in_transit": "InTransit",
    "out_for_delivery": "OutForDelivery",
    "failed_attempt": "FailedAttempt",
    "available_for_pickup": "PickupReady",
    "delivered": "Delivered",
    "exception": "Exception",
    "expired": "Expired",
    "unknown": "Held",
}
UNIQUE_ID = re.compile(r"^(?!info)[^/.]+$")
DEMO_COUNT = 120
DEMO_COURIERS = ("dhl", "dpd", "ups", "hermes", "gls")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def detail(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A DRF ``{"detail": ...}`` answer."""
    return Response(status, {"detail": message}, headers or {})


@dataclass
class _Order:
    seq: int
    data: dict
    trackings: list[dict] = field(default_factory=list)


class ParcelLabApi(SandboxApi):
    """``Authorization: Bearer TOKEN``; no plans (quota only from ``--rpm``); one order per call."""

    name = "parcellab"
    prefix = "/parcellab"
    routes = (
        route("GET", "/v4/track/orders/?", "list_orders"),
        route("PUT", "/v4/track/orders/?", "upsert_order"),
        route("POST", "/v4/track/orders/?", "create_order"),
        route("GET", "/v4/track/orders/{unique_id}/?", "get_order", tracking=True),
    )

    def reset(self) -> None:
        with self.lock:
            self.orders: dict[int, _Order] = {}
            self.index: dict[str, int] = {}
            self.next_seq = 1
            for number in range(1, DEMO_COUNT + 1):
                self._store({"account": 1, "order_number": f"PL-DEMO-{number:04d}", "recipient_email": "_unset",
                             "destination_country_iso3": "DEU"},
                            [{"tracking_number": f"JJD00{number:08d}",
                              "courier": DEMO_COURIERS[number % len(DEMO_COURIERS)]}])

    def key(self, request: Request) -> str | None:
        scheme, _, token = request.header("Authorization").partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and self.valid_key(token) else None

    def unauthorized(self, request: Request) -> Response:
        message = "Invalid token." if request.header("Authorization") else \
            "Authentication credentials were not provided."
        return detail(401, message, {"WWW-Authenticate": 'Bearer realm="api"'})

    def not_found(self, request: Request) -> Response:
        return detail(404, "Not found.")

    def rate_limited(self, request: Request, wait: float) -> Response:
        seconds = max(1, math.ceil(wait))
        return detail(429, f"Request was throttled. Expected available in {seconds} seconds.")

    def unavailable(self, request: Request) -> Response:
        return detail(503, "Service temporarily unavailable.")

    def bad_json(self) -> bytes:
        return b'{"account": 1, "order_number": "PL-DEMO-0001", "trackings": [{"tracking_number": "JJD'

    # --- store --------------------------------------------------------------------------
    def _store(self, data: dict, trackings: list[dict]) -> _Order:
        order = _Order(self.next_seq, dict(data), [dict(t) for t in trackings])
        self.next_seq += 1
        self.orders[order.seq] = order
        self._index(order)
        return order

    def _index(self, order: _Order) -> None:
        for name in ("order_number", "external_reference", "external_id"):
            value = order.data.get(name)
            if isinstance(value, str) and value:
                self.index[value] = order.seq

    def _find(self, body: dict) -> _Order | None:
        for name in ("order_number", "external_reference"):
            value = body.get(name)
            if isinstance(value, str) and value and value in self.index:
                return self.orders[self.index[value]]
        return None

    @staticmethod
    def _apply(order: _Order, body: dict) -> None:
        order.data.update({name: value for name, value in body.items() if name != "mutations"})
        if isinstance(order.data.get("account"), str):
            order.data["account"] = int(order.data["account"])
        for mutation in body.get("mutations") or []:
            given = mutation.get("tracking") or {}
            number = given.get("tracking_number")
            existing = next((t for t in order.trackings if t.get("tracking_number") == number), None)
            if mutation.get("type") == "cancel_tracking":
                if existing is not None:
                    existing["cancelled_date"] = given.get("cancelled_date") or iso_z(day_start(time.time()))
            elif existing is not None:
                existing.update(given)
            else:
                order.trackings.append(dict(given))

    @staticmethod
    def _summary(order: _Order, created: bool) -> dict:
        return {"order_number": order.data.get("order_number"),
                "external_reference": order.data.get("external_reference"),
                "account": order.data.get("account"), "created": created}

    # --- endpoints ----------------------------------------------------------------------
    def upsert_order(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``PUT /v4/track/orders/``: idempotent create or update."""
        body, problem = self._validated(request)
        if problem is not None:
            return problem
        with self.lock:
            order = self._find(body)
            created = order is None
            if order is None:
                order = self._store({}, [])
            self._apply(order, body)
            self._index(order)
            return Response(201 if created else 200, self._summary(order, created))

    def create_order(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``POST /v4/track/orders/``: create, 400 when the order exists."""
        body, problem = self._validated(request)
        if problem is not None:
            return problem
        with self.lock:
            if self._find(body) is not None:
                return detail(400, "Order already exists.")
            order = self._store({}, [])
            self._apply(order, body)
            self._index(order)
            return Response(201, self._summary(order, True))

    @staticmethod
    def _validated(request: Request) -> tuple[dict, Response | None]:
        try:
            body = request.json()
        except ValueError as exc:
            return {}, detail(400, f"JSON parse error - {exc}")
        errors = validate(body)
        return (body, Response(400, errors)) if errors else (body, None)

    def list_orders(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``GET /v4/track/orders/?cursor=&ordering=&page_size=``."""
        query = request.query
        ordering = query.get("ordering") or "-created"
        by_name = ordering.lstrip("-") == "order_number"
        descending = ordering.startswith("-") or ordering.lstrip("-") not in ("order_number", "created",
                                                                              "created_at", "id")

        def position(order: _Order) -> tuple:
            return (order.data.get("order_number") or "", order.seq) if by_name else (order.seq, order.seq)

        try:
            size = min(MAX_PAGE_SIZE, max(1, int(query.get("page_size") or DEFAULT_PAGE_SIZE)))
            cursor = _decode(query["cursor"]) if query.get("cursor") else None
        except ValueError:
            return detail(404, "Invalid cursor")
        with self.lock:
            rows = sorted(self.orders.values(), key=position, reverse=descending)
        keys = [position(order) for order in rows]
        if cursor is not None and keys and type(cursor[0][0]) is not type(keys[0][0]):
            return detail(404, "Invalid cursor")
        start = 0
        if cursor is not None:
            mark, reverse = cursor
            after = [i for i, k in enumerate(keys) if (k < mark if descending else k > mark)]
            first_after = after[0] if after else len(rows)
            if reverse:
                end = next((i for i, k in enumerate(keys) if (k <= mark if descending else k >= mark)), len(rows))
                start = max(0, end - size)
                page = rows[start:end]
            else:
                start = first_after
                page = rows[start:start + size]
        else:
            page = rows[:size]
        base = f"{request.base_url}/v4/track/orders/"
        keep = {name: query[name] for name in ("page_size", "ordering") if query.get(name)}
        end = start + len(page)
        next_url = f"{base}?{urlencode({**keep, 'cursor': _encode(position(page[-1]), False)})}" \
            if page and end < len(rows) else None
        prev_url = f"{base}?{urlencode({**keep, 'cursor': _encode(position(page[0]), True)})}" \
            if page and start > 0 else None
        results = [{"order_number": order.data.get("order_number"),
                    "tracking_number": order.trackings[0].get("tracking_number") if order.trackings else None}
                   for order in page]
        return Response(200, {"next": next_url, "previous": prev_url, "results": results})

    def get_order(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``GET /v4/track/orders/{unique_id}/``."""
        unique_id = unquote(params["unique_id"])
        if not UNIQUE_ID.match(unique_id):
            return self.not_found(request)
        with self.lock:
            seq = self.index.get(unique_id)
            order = self.orders[seq] if seq is not None else None
            data = dict(order.data) if order else None
            trackings = [dict(t) for t in order.trackings] if order else None
        if data is None:
            if classify(unique_id).outcome == "not_found":
                return self.not_found(request)
            tracking = self.lookup(unique_id, "DE", count=False)
            data = {"account": 1, "order_number": unique_id, "recipient_email": "_unset",
                    "destination_country_iso3": COUNTRIES[tracking.destination.country][1]}
            trackings = [{"tracking_number": unique_id, "courier": "dhl"}]
        return Response(200, self._render(data, trackings))

    # --- rendering ----------------------------------------------------------------------
    def _render(self, data: dict, trackings: list[dict]) -> dict:
        order = {name: data.get(name, default) for name, default in ORDER_FIELDS.items()}
        if order["external_id"] is None:
            order["external_id"] = data.get("external_reference")
        order["mutations"] = []
        order["trackings"] = [self._tracking(given, data) for given in trackings]
        return order

    def _tracking(self, given: dict, order: dict) -> dict:
        out = {name: given.get(name, default) for name, default in TRACKING_FIELDS.items()}
        number, courier = str(given.get("tracking_number") or ""), str(given.get("courier") or "")
        tracking = self.lookup(number, carrier_info(courier).country or None)
        checkpoints = _checkpoints(tracking, courier)
        firsts = {}
        for event in reversed(tracking.events):
            firsts.setdefault(event.kind, event.at.date().isoformat())
        delivered = tracking.delivered_at
        out.update({
            "destination_country_iso3": given.get("destination_country_iso3") or order.get("destination_country_iso3"),
            "announced_delivery_date": given.get("announced_delivery_date") or (
                tracking.estimated_delivery.date().isoformat() if tracking.estimated_delivery else None),
            "checkpoints": checkpoints,
            "pod_date": delivered.date().isoformat() if delivered else None,
            "reporting_delivery_date": delivered.date().isoformat() if delivered else None,
            "reporting_pickup_date": firsts.get("picked_up"),
            "reporting_in_transit_date": firsts.get("in_transit") or firsts.get("picked_up"),
            "security_hash": hashlib.sha1(f"{courier}:{number}".encode()).hexdigest(),
        })
        return out


def _checkpoints(tracking: Tracking, courier: str) -> list[dict]:
    """Checkpoints oldest first, as parcelLab lists them."""
    if tracking.outcome == "pending":
        at = day_start(time.time()) - timedelta(hours=2)
        return [{"status_code": "Pending", "message": "Order received, awaiting the first courier scan",
                 "courier": courier, "exception": [], "delivery_location": "",
                 "event_timestamp": iso_z(at, millis=True), "courier_status": "pending"}]
    return [{
        "status_code": STATUS_CODE[event.kind],
        "message": event.text,
        "courier": courier,
        "exception": [event.text] if event.kind in ("exception", "expired") else [],
        "delivery_location": f"{event.place.postal} {event.place.city}".strip(),
        "event_timestamp": iso_z(event.at, millis=True),
        "courier_status": event.code,
    } for event in reversed(tracking.events)]


def _encode(position: tuple, reverse: bool) -> str:
    kind = "i" if isinstance(position[0], int) else "s"
    raw = urlencode({"p": position[0], "t": kind, "s": position[1], "r": int(reverse)})
    return base64.b64encode(raw.encode()).decode()


def _decode(cursor: str) -> tuple[tuple, bool]:
    try:
        fields = parse_qs(base64.b64decode(cursor.encode(), validate=True).decode(), keep_blank_values=True)
        value: int | str = fields["p"][0]
        if fields["t"][0] == "i":
            value = int(value)
        return (value, int(fields["s"][0])), fields["r"][0] == "1"
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
