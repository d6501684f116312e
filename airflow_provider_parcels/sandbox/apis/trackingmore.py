"""TrackingMore v2 fake: errors inside HTTP 200 (``meta.code``), zone-less mixed-format dates.

Endpoints: ``GET /trackings/get``, ``POST /trackings/post``, ``POST /trackings/batch``,
``POST /trackings/realtime``, ``GET /trackings/{carrier_code}/{tracking_number}`` and
``GET /trackings/getuserinfo``. The account holds 60 demo trackings ``TMDEMO0001``..``0060``
plus what clients create; ``NEW...`` numbers are unregistered until created.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..outcomes import Tracking, classify, day_start, digest
from ..places import COUNTRIES, Place, carrier_info
from ..wire import Request, Response, iso_offset, local_naive
from .base import Plan, SandboxApi, count_list, route

STATUS = {
    "pending": "pending",
    "info_received": "pending",
    "in_transit": "transit",
    "available_for_pickup": "transit",
    "out_for_delivery": "pickup",
    "failed_attempt": "undelivered",
    "delivered": "delivered",
    "exception": "exception",
    "expired": "expired",
    "unknown": "alert",
    "not_found": "notfound",
}
CARRIER_CODES = ("usps", "ups", "fedex", "dhl", "china-ems", "phlpost", "royal-mail", "deutsche-post",
                 "korea-post")
NATIONAL_POST = {"US": "usps", "DE": "deutsche-post", "KR": "korea-post", "GB": "royal-mail",
                 "CN": "china-ems", "PH": "phlpost", "IN": "indiapost", "FR": "la-poste", "JP": "japan-post"}
MAX_NUMBERS = 40
MAX_LIMIT = 2000
DEMO_COUNT = 60
_EXTRA_FIELDS = ("order_id", "title", "customer_name", "customer_email", "order_create_time")


def envelope(code: int, kind: str, message: str, data: object = None, status: int = 200) -> Response:
    """A TrackingMore answer: ``{"meta": {...}, "data": ...}``."""
    return Response(status, {"meta": {"code": code, "type": kind, "message": message},
                             "data": [] if data is None else data})


def _numbers(request: Request) -> list[str]:
    seen: dict[str, str] = {}
    for number in request.query.get("numbers", "").split(","):
        if number.strip():
            seen.setdefault(number.strip().upper(), number.strip())
    return list(seen.values())


def _int(value: str | None, default: int | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


@dataclass
class _Record:
    number: str
    carrier: str
    created: float
    updated: float | None = None
    extra: dict = field(default_factory=dict)


class TrackingMoreApi(SandboxApi):
    """Header ``Trackingmore-Api-Key``; plan ``standard`` = 60/min; 40 numbers per request."""

    name = "trackingmore"
    prefix = "/trackingmore/v2"
    plans = {"standard": Plan(60, MAX_NUMBERS)}
    max_batch = MAX_NUMBERS
    routes = (
        route("GET", "/trackings/get", "get_trackings", items=lambda r: max(1, len(_numbers(r))), tracking=True),
        route("POST", "/trackings/post", "create_one"),
        route("POST", "/trackings/batch", "create_batch", items=count_list(None)),
        route("POST", "/trackings/realtime", "realtime", tracking=True),
        route("GET", "/trackings/getuserinfo", "user_info"),
        route("GET", "/trackings/{carrier_code}/{tracking_number}", "get_one", tracking=True),
    )

    def reset(self) -> None:
        anchor = float(int(time.time()) // 60 * 60)
        with self.lock:
            self.created: dict[str, _Record] = {}
            self.demos: list[_Record] = []
            for index in range(1, DEMO_COUNT + 1):
                updated = anchor - (index - 0.5) * 72 * 3600 / DEMO_COUNT
                self.demos.append(_Record(f"TMDEMO{index:04d}", CARRIER_CODES[index % len(CARRIER_CODES)],
                                          updated - 86400 * (2 + index % 5), updated,
                                          {"order_id": f"TM-ORDER-{index:04d}"}))

    def key(self, request: Request) -> str | None:
        key = request.header("Trackingmore-Api-Key")
        return key if self.valid_key(key) else None

    def unauthorized(self, request: Request) -> Response:
        return envelope(4001, "Bad Request", "Invalid API key.")

    def not_found(self, request: Request) -> Response:
        return envelope(404, "Not Found", "The requested URL was not found.", status=404)

    def rate_limited(self, request: Request, wait: float) -> Response:
        return envelope(4029, "Bad Request", "Request frequency exceeded the limit.")

    def unavailable(self, request: Request) -> Response:
        return envelope(503, "Service Unavailable", "Service temporarily unavailable, please retry.", status=503)

    def bad_json(self) -> bytes:
        return b'{"meta": {"code": 200, "type": "Success", "message": "Success"}, "data": {"page": 1, "items": [{'

    # --- records ------------------------------------------------------------------------
    def _record(self, number: str) -> _Record | None:
        upper = number.upper()
        with self.lock:
            if upper in self.created:
                return self.created[upper]
        if upper.startswith("TMDEMO") and upper[6:].isdigit() and 1 <= int(upper[6:]) <= DEMO_COUNT:
            return self.demos[int(upper[6:]) - 1]
        if not classify(number).registered:
            return None
        carrier = CARRIER_CODES[digest(number)[12] % len(CARRIER_CODES)]
        return _Record(number, carrier, 0.0)

    def _item(self, record: _Record, tracking: Tracking) -> dict:
        events = tracking.events
        dated = []
        for index, event in enumerate(events):
            date = local_naive(event.at, event.place.offset_minutes, sep=" ", seconds=bool(index % 2))
            dated.append((event, {"Date": date, "StatusDescription": event.text, "Details": _details(event.place)}))
        abroad = tracking.origin.country != tracking.destination.country
        origin_info = [entry for event, entry in dated if not (abroad and event.place == tracking.destination)]
        dest_info = [entry for event, entry in dated if abroad and event.place == tracking.destination]
        oldest = events[-1].at.timestamp() if events else day_start(time.time()).timestamp() - 2 * 86400
        created = record.created or oldest
        updated = record.updated or max(created, events[0].at.timestamp() if events else created)
        delivered = tracking.delivered_at
        newest = dated[0][1] if dated else None
        item = {
            "id": hashlib.md5(f"{record.carrier}:{record.number.upper()}".encode()).hexdigest(),
            "tracking_number": record.number,
            "carrier_code": record.carrier,
            "status": STATUS[tracking.outcome],
            "created_at": iso_offset(_dt(created), 480),
            "updated_at": iso_offset(_dt(updated), 480),
            "order_create_time": record.extra.get("order_create_time"),
            "title": record.extra.get("title"),
            "order_id": record.extra.get("order_id"),
            "customer_name": record.extra.get("customer_name"),
            "customer_email": record.extra.get("customer_email"),
            "archived": False,
            "original_country": COUNTRIES[tracking.origin.country][0],
            "destination_country": COUNTRIES[tracking.destination.country][0],
            "itemTimeLength": round((delivered.timestamp() - oldest) / 86400) if delivered else None,
            "service_code": None,
            "origin_info": _info(record.carrier, origin_info),
            "destination_info": _info(NATIONAL_POST.get(tracking.destination.country, "") if abroad else "",
                                      dest_info),
            "lastEvent": ",".join((newest["StatusDescription"], newest["Details"], newest["Date"]))
            if newest else None,
            "lastUpdateTime": newest["Date"] if newest else None,
        }
        return item

    def _render(self, record: _Record, count: bool = True) -> dict:
        tracking = self.lookup(record.number, carrier_info(record.carrier).country or None, count=count)
        return self._item(record, tracking)

    # --- endpoints ----------------------------------------------------------------------
    def get_trackings(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``GET /trackings/get``: by ``numbers`` or the whole account, filtered and paged."""
        query = request.query
        page = max(1, _int(query.get("page"), 1) or 1)
        limit = _int(query.get("limit"), 100) or 100
        if limit > MAX_LIMIT:
            return envelope(4031, "Bad Request", f"The maximum value of limit is {MAX_LIMIT}.")
        numbers = _numbers(request)
        if len(numbers) > MAX_NUMBERS:
            return envelope(4031, "Bad Request", "The maximum number of tracking numbers per request is 40.")
        if numbers:
            records = [record for record in map(self._record, numbers) if record is not None]
        else:
            with self.lock:
                records = self.demos + list(self.created.values())
        items = [self._render(record, count=bool(numbers)) for record in records]
        items = [item for item in items if _matches(item, query)]
        start = (page - 1) * max(1, limit)
        data = {"page": page, "limit": limit, "total": str(len(items)), "items": items[start:start + max(1, limit)]}
        return envelope(200, "Success", "Success", data)

    def get_one(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``GET /trackings/{carrier_code}/{tracking_number}``."""
        record = self._record(params["tracking_number"])
        if record is None:
            return envelope(4017, "Bad Request", "Tracking does not exist.")
        return envelope(200, "Success", "Success", self._render(record))

    def realtime(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``POST /trackings/realtime``: one number, looked up now (registered or not)."""
        body = request.json_or_none()
        body = body if isinstance(body, dict) else {}
        problem = _missing(body)
        if problem:
            return envelope(problem[0], "Bad Request", problem[1])
        number, carrier = str(body["tracking_number"]).strip(), str(body["carrier_code"]).strip().lower()
        record = self._record(number) or _Record(number, carrier, 0.0)
        record = _Record(record.number, carrier, record.created, record.updated, record.extra)
        return envelope(200, "Success", "Success", {"items": [self._render(record)]})

    def create_one(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``POST /trackings/post``."""
        body = request.json_or_none()
        if not isinstance(body, dict):
            return envelope(4000, "Bad Request", "The request body must be a JSON object.")
        record, problem = self._create(body)
        if problem:
            return envelope(problem[0], "Bad Request", problem[1])
        return envelope(201, "Created", "Success", self._render(record, count=False))

    def create_batch(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``POST /trackings/batch``: up to 40, one error entry per refused tracking; when every
        tracking is refused for the same reason, that reason's ``meta.code`` (HTTP 200) and no data."""
        body = request.json_or_none()
        if not isinstance(body, list):
            return envelope(4000, "Bad Request", "The request body must be a JSON array of trackings.")
        if len(body) > min(MAX_NUMBERS, self.batch_limit(key)):
            return envelope(4031, "Bad Request", "The maximum number of tracking numbers per request is 40.")
        trackings, errors = [], []
        for entry in body:
            entry = entry if isinstance(entry, dict) else {}
            record, problem = self._create(entry)
            if problem:
                errors.append({"tracking_number": entry.get("tracking_number"),
                               "carrier_code": entry.get("carrier_code"),
                               "code": problem[0], "message": problem[1]})
                continue
            item = self._render(record, count=False)
            trackings.append({name: item[name] for name in (
                "id", "tracking_number", "carrier_code", "status", "created_at", *_EXTRA_FIELDS[:4])})
        if body and not trackings and len({error["code"] for error in errors}) == 1:
            # Every tracking refused for one reason: the envelope carries that code, as
            # ``/trackings/post`` does (e.g. meta.code 4016 inside an HTTP 200), and no data.
            return envelope(errors[0]["code"], "Bad Request", errors[0]["message"])
        data = {"submitted": len(body), "added": len(trackings), "trackings": trackings, "errors": errors}
        return envelope(201, "Created", "Success", data)

    def user_info(self, request: Request, key: str, params: dict[str, str]) -> Response:
        """``GET /trackings/getuserinfo``: a cheap authenticated call."""
        with self.lock:
            count = DEMO_COUNT + len(self.created)
        return envelope(200, "Success", "Success", {"email": "sandbox@example.com", "tracking_count": count})

    def _create(self, body: dict) -> tuple[_Record | None, tuple[int, str] | None]:
        problem = _missing(body)
        if problem:
            return None, problem
        number = str(body["tracking_number"]).strip()
        with self.lock:
            if number.upper() in self.created or classify(number).registered:
                return None, (4016, "Tracking already exists.")
            extra = {name: body.get(name) for name in _EXTRA_FIELDS}
            record = _Record(number, str(body["carrier_code"]).strip().lower(), time.time(), None, extra)
            self.created[number.upper()] = record
        return record, None


def _missing(body: dict) -> tuple[int, str] | None:
    if not str(body.get("tracking_number") or "").strip():
        return 4013, "Tracking number is required."
    if not str(body.get("carrier_code") or "").strip():
        return 4015, "Carrier code is required."
    return None


def _matches(item: dict, query: dict[str, str]) -> bool:
    if query.get("status") and item["status"] != query["status"]:
        return False
    if query.get("archived") == "true":
        return False
    orders = {order.strip() for order in query.get("orders", "").split(",") if order.strip()}
    if orders and item["order_id"] not in orders:
        return False
    for name, stamp_field in (("created_at", "created_at"), ("update_time", "updated_at")):
        low, high = _int(query.get(f"{name}_min"), None), _int(query.get(f"{name}_max"), None)
        if low is None and high is None:
            continue
        stamp = _epoch(item[stamp_field])
        if (low is not None and stamp < low) or (high is not None and stamp > high):
            return False
    return True


def _details(place: Place) -> str:
    if place.country == "US":
        return f"{place.city.upper()}, {place.region} {place.postal}"
    return f"{place.city}, {COUNTRIES[place.country][0]}"


def _info(carrier: str, trackinfo: list[dict]) -> dict:
    info = carrier_info(carrier)
    return {"weblink": info.website, "phone": info.phone, "carrier_code": carrier, "trackinfo": trackinfo}


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(int(epoch), tz=timezone.utc)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
