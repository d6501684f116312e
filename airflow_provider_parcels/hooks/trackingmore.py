"""
TrackingMore (API v2): ``GET /trackings/get?numbers=`` with up to 40 numbers, trackings
created with ``POST /trackings/batch`` (40 per call), ``Trackingmore-Api-Key`` header.

Traps: many errors come inside an HTTP 200 with ``meta.code`` (4001 bad key, 4016 already
exists, 4017 does not exist, 4029 request frequency, 4021 the account's quota used up: never
retried, ``quota_exhausted`` rows and the key's ledger at zero until the month resets), so
every answer's ``meta.code`` is read; ``pickup`` means out for delivery, not a pickup point; ``notfound`` is not_found;
``Date`` values are zone-less local times in mixed formats (``2015-10-25 15:01`` and
``2015-10-25 15:01:00``), kept as written with no UTC time; origin and destination carrier
events often repeat each other and are de-duplicated. A number the account has not
registered is absent from the answer and becomes a ``not_found`` error, or, with
``register_missing=True``, is registered and tracked again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_parcels.hooks.base import ParcelTrackingHook, invalid_input_key
from airflow_provider_parcels.hooks.exceptions import ParcelApiAuthError, RequestRejected, RetryableApiError
from airflow_provider_parcels.hooks.parsing import StatusMap, dedupe_events, make_event, parse_utc, text
from airflow_provider_parcels.hooks.settings import Plan
from airflow_provider_parcels.hooks.transport import ApiRequest, ApiResponse
from airflow_provider_parcels.models import (
    InvalidParcelError,
    Parcel,
    ParcelStatus,
    TrackingResult,
)

S = ParcelStatus
TRACKINGMORE_STATUS = StatusMap(
    "TrackingMore",
    {
        "pending": S.PENDING,
        "notfound": S.NOT_FOUND,
        "transit": S.IN_TRANSIT,
        "pickup": S.OUT_FOR_DELIVERY,
        "delivered": S.DELIVERED,
        "undelivered": S.FAILED_ATTEMPT,
        "exception": S.EXCEPTION,
        "expired": S.EXPIRED,
    },
)
#: Errors of a create call that may come after TrackingMore carried it out (no answer, a 5xx,
#: an unreadable answer): its outcome is then looked up, never guessed.
MAYBE_LANDED = frozenset({"timeout", "connection_error", "server_error", "malformed_response"})
#: Longest wait, after a create call got no answer, before looking up what it did.
CONFIRM_SETTLE_SECONDS = 10.0
#: Seconds a tracking's ``created_at`` may precede our clock's send time and still be ours.
CLOCK_SKEW_SECONDS = 120.0
AUTH_CODES = frozenset({4001, 4002, 401, 403})
QUOTA_CODES = frozenset({4029, 4030, 429})
#: The account's tracking quota is used up (HTTP 200): never retried, error code ``quota_exhausted``.
BUDGET_CODES = frozenset({4021})
EXISTS = 4016
NOT_EXISTS = 4017


@dataclass(frozen=True)
class CreateResult:
    """
    What became of one parcel (or order) handed to a create call.

    :param key: the tracking number (or order number).
    :param outcome: ``created``, ``updated``, ``created_or_updated`` (parcelLab, when a retried
        ``PUT`` cannot tell which), ``exists`` (unchanged) or ``error``.
    :param message: the API's message for errors.
    :param status_code: the HTTP status or API code behind the outcome.
    """

    key: str
    outcome: str
    message: str | None = None
    status_code: int | None = None
    carrier: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class TrackingMoreHook(ParcelTrackingHook):
    """
    Hook for the TrackingMore API v2.

    The connection's password holds the API key; extras ``plan`` (``standard``: the doc's
    one call per second on ``/trackings/get``), ``requests_per_minute``, ``max_concurrency``,
    ``timeout``.

    :param conn_id: the Airflow connection, default ``trackingmore_default``.
    :param register_missing: register numbers the account does not know yet
        (``POST /trackings/batch``) and track them, instead of ``not_found`` errors.
    """

    conn_type = "trackingmore"
    default_conn_name = "trackingmore_default"
    hook_name = "TrackingMore"
    provider = "trackingmore"
    default_base_url = "https://api.trackingmore.com/v2"
    plans = {"standard": Plan(60, 40)}
    default_plan = "standard"
    max_batch_size = 40
    status_map = TRACKINGMORE_STATUS
    test_request = ApiRequest("GET", "/trackings/get", params={"page": 1, "limit": 1})

    def __init__(self, conn_id: str | None = None, *, register_missing: bool = False, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self.register_missing = register_missing

    def auth_headers(self) -> dict[str, str]:
        return {"Trackingmore-Api-Key": str(self._password), "Content-Type": "application/json"}

    def build_batch_request(self, parcels: Sequence[Parcel]) -> ApiRequest:
        numbers = ",".join(p.tracking_number for p in parcels)
        return ApiRequest("GET", "/trackings/get", params={"numbers": numbers, "limit": 2000, "page": 1},
                          parcels=tuple(parcels))

    def check_answer(self, request: ApiRequest, response: ApiResponse, body: Any) -> None:
        meta = body.get("meta") if isinstance(body, Mapping) else None
        if not isinstance(meta, Mapping):
            if response.status_code < 400 and request.parcels:
                raise RetryableApiError("malformed_response", "TrackingMore answer has no meta")
            return
        try:
            code = int(meta.get("code"))
        except (TypeError, ValueError):
            code = 0
        message = str(meta.get("message") or f"meta.code {code}")
        if code in AUTH_CODES:
            raise ParcelApiAuthError(
                f"TrackingMore refused the credentials of connection {self.conn_id!r} "
                f"(meta.code {code}: {self.redact(message)}); check the key in the connection"
            )
        if code in BUDGET_CODES:
            # the account's quota is spent: no retry helps before it resets (not a per-minute refusal)
            self.budget_spent("month", None, f"TrackingMore meta.code {code}: {self.redact(message)}", request.cost)
        if code in QUOTA_CODES:
            raise self.rate_limited(response, f"meta.code {code} {message}")
        if code >= 4000 and code not in (EXISTS, NOT_EXISTS):
            raise RequestRejected(400, "bad_request", f"TrackingMore meta.code {code}: {message}")
        if code == NOT_EXISTS and request.parcels:
            raise RequestRejected(404, "not_found", f"TrackingMore meta.code {code}: {message}")

    def parse_track_response(self, request: ApiRequest, body: Any) -> list[TrackingResult]:
        data = body.get("data")
        items = data.get("items") if isinstance(data, Mapping) else data
        out: dict[tuple[str, str], TrackingResult] = {}
        for item in items or ():
            if not isinstance(item, Mapping):
                continue
            parcel = request.find(item.get("tracking_number"), item.get("carrier_code"))
            if parcel is not None and parcel.key not in out:
                out[parcel.key] = self.read_item(parcel, self.parse_item, parcel, item)
        for parcel in request.parcels:
            if parcel.key not in out:
                out[parcel.key] = self.failure(
                    parcel, "not_found", "not registered in the TrackingMore account "
                    "(create it first, or track with register_missing=True)"
                )
        return list(out.values())

    def parse_item(self, parcel: Parcel, item: Mapping[str, Any]) -> TrackingResult:
        """One tracking of ``/trackings/get`` (or ``/trackings/realtime``)."""
        trackinfo = []
        for side in ("origin_info", "destination_info"):
            info = item.get(side)
            if isinstance(info, Mapping):
                trackinfo.extend(e for e in info.get("trackinfo") or () if isinstance(e, Mapping))
        events = dedupe_events(
            make_event(
                when=e.get("Date"),
                provider_status=e.get("checkpoint_status"),
                status=self.status_map(e["checkpoint_status"]) if e.get("checkpoint_status") else S.UNKNOWN,
                description=e.get("StatusDescription"),
                location=e.get("Details"),
                raw=e,
            )
            for e in trackinfo
        )
        # ``notfound`` is a state of a tracking the account holds (no carrier scan yet): an
        # answer, not an error. Only a number the account lacks is an error row (above).
        status = self.status_map(item.get("status"))
        return self.result(
            parcel,
            status=status,
            provider_status=text(item.get("status")),
            status_text=text(item.get("lastEvent")),
            carrier_name=text(item.get("carrier_code")),
            origin_country=text(item.get("original_country")),
            destination_country=text(item.get("destination_country")),
            events=events,
            raw=item,
        )

    # ------------------------------------------------------------------ registration

    def after_chunk(self, results: list[TrackingResult]) -> list[TrackingResult]:
        """With ``register_missing``, register the numbers the account lacks and track them again."""
        if not self.register_missing:
            return results
        missing = [
            Parcel(r.carrier, r.tracking_number, r.client_id)
            for r in results
            if r.error is not None and r.error.code == "not_found" and not r.raw
        ]
        if not missing:
            return results
        self.create_trackings(missing)
        again = {r.key: r for r in self._collect(self._submit_chunk(missing, 0), finish=False)}
        return [again.get(r.key, r) for r in results]

    def create_trackings(self, parcels: Sequence[Parcel | Mapping[str, Any]],
                         **fields: Any) -> list[CreateResult]:
        """
        Register parcels for tracking: ``POST /trackings/batch``, 40 per call, each call sent
        once per attempt (only refusals that created nothing, 429 and quota codes, are retried).

        :param parcels: parcels or dicts (extra keys such as ``order_id``, ``title`` are sent).
        :param fields: fields added to every tracking (e.g. ``lang="en"``).
        :return: one ``CreateResult`` per parcel: ``created``, ``exists`` (4016) or ``error``.
        """
        out: list[CreateResult | None] = []
        rows: list[dict[str, Any]] = []
        slots: list[int] = []
        for index, item in enumerate(parcels):
            try:
                parcel = Parcel.coerce(item, index=index)
            except InvalidParcelError as err:
                number = item.get("tracking_number") if isinstance(item, Mapping) else None
                key = number if isinstance(number, str) and number.strip() else invalid_input_key(item)
                out.append(CreateResult(key, "error", str(err)))
                continue
            extra = {k: v for k, v in item.items() if k not in ("carrier", "tracking_number") and v is not None} \
                if isinstance(item, Mapping) else {}
            rows.append({"tracking_number": parcel.tracking_number, "carrier_code": parcel.carrier, **fields, **extra})
            slots.append(len(out))
            out.append(None)
        for start in range(0, len(rows), self.max_batch_size):
            answered = self._create_batch(rows[start : start + self.max_batch_size])
            for slot, result in zip(slots[start : start + self.max_batch_size], answered, strict=True):
                out[slot] = result
        return [self.redact_value(r) for r in out if r is not None]

    def _create_batch(self, rows: list[dict[str, Any]]) -> list[CreateResult]:
        request = ApiRequest("POST", "/trackings/batch", json=rows)
        started = time.time()
        try:
            response = self.call_once_per_attempt(request)
        except RequestRejected as err:
            return [CreateResult(r["tracking_number"], "error", str(err), carrier=r["carrier_code"]) for r in rows]
        except RetryableApiError as err:
            if err.code not in MAYBE_LANDED:
                return [CreateResult(r["tracking_number"], "error", str(err), carrier=r["carrier_code"])
                        for r in rows]
            # The call may have been carried out, or may still be running there: wait as long
            # as we waited for its answer (at most CONFIRM_SETTLE_SECONDS), then look.
            time.sleep(min(self.settings.timeout, CONFIRM_SETTLE_SECONDS))
            return self._confirm(rows, started, f"no answer to POST /trackings/batch ({err.code})")
        body = response.json()
        body = body if isinstance(body, Mapping) else {}
        meta_code = _meta_code(body)
        data = body.get("data") if isinstance(body.get("data"), Mapping) else {}
        created = {str(t.get("tracking_number")).upper() for t in data.get("trackings") or ()
                   if isinstance(t, Mapping)}
        errors = {str(e.get("tracking_number")).upper(): e for e in data.get("errors") or ()
                  if isinstance(e, Mapping)}
        out: list[CreateResult | None] = []
        unreported = []
        for row in rows:
            number, carrier = row["tracking_number"], row["carrier_code"]
            error = errors.get(number.upper())
            code = _int_or_zero(error.get("code")) if error is not None else 0
            if error is not None and code == EXISTS:
                out.append(CreateResult(number, "exists", str(error.get("message")), EXISTS, carrier))
            elif error is not None:
                out.append(CreateResult(number, "error", str(error.get("message")), code, carrier))
            elif number.upper() in created:
                out.append(CreateResult(number, "created", None, 201, carrier))
            elif meta_code == EXISTS:
                # meta.code 4016 in an HTTP 200 with no per-tracking detail: the call's trackings exist.
                out.append(CreateResult(number, "exists", str(body["meta"].get("message") or "already exists"),
                                        EXISTS, carrier))
            else:
                unreported.append(row)
                out.append(None)
        if unreported:
            confirmed = iter(self._confirm(unreported, started, f"the answer (meta.code {meta_code}) did not "
                                                                "report this tracking"))
            out = [r if r is not None else next(confirmed) for r in out]
        return [r for r in out if r is not None]

    def _confirm(self, rows: list[dict[str, Any]], started: float, why: str) -> list[CreateResult]:
        """
        After a create call whose outcome is unknown (no answer, or an answer silent about some
        trackings): look the numbers up with ``GET /trackings/get?numbers=`` (a read, safe to
        retry) and report what is true now. A tracking found was ``created`` when TrackingMore
        dates it from this call on (``created_at``), else it ``exists``; one not found is an
        ``error`` (not created); if the lookup fails too, an ``error`` saying the outcome is unknown.

        :param rows: the trackings sent.
        :param started: when the create call was sent (epoch seconds).
        :param why: what made the outcome unknown, for the messages.
        """
        numbers = ",".join(r["tracking_number"] for r in rows)
        request = ApiRequest("GET", "/trackings/get", params={"numbers": numbers, "limit": 2000, "page": 1})
        try:
            response = self.call(request)
            body = response.json()
            self.check_answer(request, response, body)
            data = body.get("data")
            items = data.get("items") if isinstance(data, Mapping) else data
            found = {str(i.get("tracking_number")).upper(): i for i in items or () if isinstance(i, Mapping)}
        except (RetryableApiError, RequestRejected) as err:
            message = (f"{why}; the lookup that would tell whether it was created failed too ({err}): "
                       f"the tracking may or may not exist, run the create again (it is safe: an existing "
                       f"tracking counts as exists)")
            return [CreateResult(r["tracking_number"], "error", message, carrier=r["carrier_code"]) for r in rows]
        out = []
        for row in rows:
            number, carrier = row["tracking_number"], row["carrier_code"]
            item = found.get(number.upper())
            if item is None:
                out.append(CreateResult(number, "error", f"{why}; a lookup right after found no such tracking: not "
                                        "created (or not yet); creating it again is safe", carrier=carrier))
                continue
            created_at = parse_utc(item.get("created_at"))
            if created_at is not None and created_at.timestamp() >= started - CLOCK_SKEW_SECONDS:
                out.append(CreateResult(number, "created", f"{why}; confirmed by a lookup", 201, carrier))
            else:
                out.append(CreateResult(number, "exists", f"{why}; a lookup found it, created before this call",
                                        EXISTS, carrier))
        return out

    def call_once_per_attempt(self, request: ApiRequest) -> ApiResponse:
        """A create call: retried only on refusals that created nothing (429, quota envelopes)."""
        from tenacity import Retrying, retry_if_exception

        def refused(err: BaseException) -> bool:
            return isinstance(err, RetryableApiError) and err.code == "rate_limited"

        kwargs = self.settings.retry.tenacity_kwargs(self._on_retry)
        kwargs["retry"] = retry_if_exception(refused)
        for attempt in Retrying(**kwargs):
            with attempt:
                response = self.send(request)
                self.raise_for_retry(response)
                self.check_answer(request, response, response.json())
                return response
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ incremental listing

    def iter_trackings(self, *, update_time_min: int | None = None, update_time_max: int | None = None,
                       status: str | None = None, page_size: int = 2000) -> Iterator[dict[str, Any]]:
        """
        Every tracking of the account changed in a window, page by page (``GET /trackings/get``
        with ``update_time_min``/``update_time_max`` in epoch seconds).

        :param update_time_min: lower bound of ``updated_at``, epoch seconds.
        :param update_time_max: upper bound, epoch seconds.
        :param status: only trackings in this TrackingMore status.
        :param page_size: trackings per page (at most 2000).
        """
        page = 1
        while True:
            params = {"page": page, "limit": min(page_size, 2000)}
            for key, value in (("update_time_min", update_time_min), ("update_time_max", update_time_max),
                               ("status", status)):
                if value is not None:
                    params[key] = value
            request = ApiRequest("GET", "/trackings/get", params=params)
            response = self.call(request)
            body = response.json()
            with self.redacting():
                self.check_answer(request, response, body)
            data = body.get("data") or {}
            items = [i for i in data.get("items") or () if isinstance(i, Mapping)]
            yield from items
            total = int(data.get("total") or 0)
            if not items or page * params["limit"] >= total:
                return
            page += 1

    def result_from_item(self, item: Mapping[str, Any]) -> TrackingResult:
        """
        A ``TrackingResult`` for a tracking listed by :meth:`iter_trackings`, under the carrier
        and number exactly as TrackingMore lists them (even ones ``Parcel`` would refuse as
        input, such as a number with a space: the account holds it, so it is reported).

        :param item: one tracking of the listing.
        """
        result = self.parse_item(Parcel("listed", "listed"), item)
        carrier, number = item.get("carrier_code"), item.get("tracking_number")
        return dataclasses.replace(result, carrier="" if carrier is None else str(carrier),
                                   tracking_number="" if number is None else str(number))


def _int_or_zero(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _meta_code(body: Any) -> int:
    """``meta.code`` of a TrackingMore answer (0 when absent or not a number)."""
    meta = body.get("meta") if isinstance(body, Mapping) else None
    return _int_or_zero(meta.get("code")) if isinstance(meta, Mapping) else 0
