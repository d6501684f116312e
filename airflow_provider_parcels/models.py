"""
The data model shared by every hook, operator, sensor and the warehouse loader.

It imports nothing of HTTP or of Airflow: a ``Parcel`` goes in, a ``TrackingResult`` with its
``TrackingEvent`` history comes out, and both round-trip through plain JSON for XCom.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

#: The longest tracking number we accept. The longest carrier formats in use are 34 characters
#: (FedEx 34-digit barcodes, DHL eCommerce, UPS Mail Innovations); 64 leaves room for order ids
#: used as parcelLab identifiers while still refusing pasted garbage.
MAX_TRACKING_NUMBER_LENGTH = 64
#: Letters, digits and ``- _ .`` only: no spaces, control characters, quotes or SQL.
TRACKING_NUMBER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Carrier codes as the five APIs write them: ``kr.cj``, ``usps``, ``dhl_express``, ``lietuvos-pastas``.
CARRIER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_OPTIONAL_TEXT_LIMIT = 128


class ParcelStatus(str, enum.Enum):
    """The canonical status of a parcel, one set for all five APIs."""

    PENDING = "pending"
    NOT_FOUND = "not_found"
    INFO_RECEIVED = "info_received"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    FAILED_ATTEMPT = "failed_attempt"
    AVAILABLE_FOR_PICKUP = "available_for_pickup"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    EXPIRED = "expired"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """Whether tracking is over for a parcel in this status (delivered, exception, expired)."""
        return self in TERMINAL_STATUSES

    @classmethod
    def parse(cls, value: str | ParcelStatus) -> ParcelStatus:
        """
        Turn a canonical status name into a ``ParcelStatus``.

        :param value: a member or its value, e.g. ``"delivered"``.
        :raises ValueError: naming the accepted values when ``value`` is not one of them.
        """
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            accepted = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown parcel status {value!r}; accepted: {accepted}") from None

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES = frozenset({ParcelStatus.DELIVERED, ParcelStatus.EXCEPTION, ParcelStatus.EXPIRED})


class InvalidParcelError(ValueError):
    """A parcel handed in that cannot be tracked; the message names the parcel and the field."""


def _label(index: int | None, value: Any) -> str:
    where = f"parcel #{index}" if index is not None else "parcel"
    return f"{where} (tracking_number={value!r})"


def _clean_optional(name: str, value: Any, index: int | None, number: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int,)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidParcelError(f"{_label(index, number)}: {name} must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        return None
    if len(value) > _OPTIONAL_TEXT_LIMIT or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidParcelError(
            f"{_label(index, number)}: {name} must be at most {_OPTIONAL_TEXT_LIMIT} printable characters"
        )
    return value


@dataclass(frozen=True)
class Parcel:
    """
    One parcel to track.

    :param carrier: the carrier code as the API names it (``usps``, ``kr.cj``, ``dhl``).
    :param tracking_number: the carrier's tracking number (parcelLab: the order number, unless
        ``client_id`` names the order).
    :param client_id: your own id for the parcel (WhereParcel ``clientId``, parcelLab order id),
        returned unchanged in the result.
    :param postal_code: recipient postal code, required by some carriers (GLS Germany).
    :param phone_number: recipient phone number, required by some carriers.
    """

    carrier: str
    tracking_number: str
    client_id: str | None = None
    postal_code: str | None = None
    phone_number: str | None = None

    def __post_init__(self) -> None:
        validate_tracking_number(self.tracking_number)
        number = self.tracking_number
        if not isinstance(self.carrier, str) or not CARRIER_PATTERN.match(self.carrier.strip()):
            raise InvalidParcelError(
                f"{_label(None, number)}: carrier must be a carrier code of letters, digits and . _ - "
                f"(got {self.carrier!r})"
            )
        object.__setattr__(self, "carrier", self.carrier.strip())
        object.__setattr__(self, "tracking_number", number.strip())
        for name in ("client_id", "postal_code", "phone_number"):
            object.__setattr__(self, name, _clean_optional(name, getattr(self, name), None, number))

    @property
    def key(self) -> tuple[str, str]:
        """``(carrier, tracking_number)``: what identifies a parcel within one API."""
        return (self.carrier, self.tracking_number)

    @classmethod
    def coerce(cls, value: Any, index: int | None = None) -> Parcel:
        """
        Build a ``Parcel`` from a ``Parcel``, a mapping or a pandas row.

        :param value: the parcel as handed in.
        :param index: its position in the input, used in error messages.
        :raises InvalidParcelError: naming the parcel (position and number) and the bad field.
        """
        if isinstance(value, Parcel):
            return value
        if hasattr(value, "to_dict") and not isinstance(value, Mapping):
            value = value.to_dict()
        if not isinstance(value, Mapping):
            where = f"parcel #{index}" if index is not None else "parcel"
            raise InvalidParcelError(
                f"{where}: expected a mapping with carrier and tracking_number, got {type(value).__name__}"
            )
        number = value.get("tracking_number")
        missing = [k for k in ("carrier", "tracking_number") if value.get(k) is None]
        if missing:
            raise InvalidParcelError(f"{_label(index, number)}: missing field(s) {', '.join(missing)}")
        try:
            return cls(
                carrier=value["carrier"],
                tracking_number=value["tracking_number"],
                client_id=_clean_optional("client_id", value.get("client_id"), index, number),
                postal_code=_clean_optional("postal_code", value.get("postal_code"), index, number),
                phone_number=_clean_optional("phone_number", value.get("phone_number"), index, number),
            )
        except InvalidParcelError as err:
            if index is None:
                raise
            raise InvalidParcelError(str(err).replace("parcel (", f"parcel #{index} (", 1)) from None

    def to_dict(self) -> dict[str, Any]:
        """The parcel as a JSON-safe dict, without empty optional fields."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Parcel:
        """Inverse of :meth:`to_dict`."""
        return cls.coerce(data)


def validate_tracking_number(value: Any, index: int | None = None) -> str:
    """
    Check a tracking number and return it stripped of surrounding white space.

    :param value: the tracking number as handed in.
    :param index: its position in the input, used in the message.
    :raises InvalidParcelError: for ``None``, non-strings, empty or white-space-only values,
        values over ``MAX_TRACKING_NUMBER_LENGTH`` characters, and characters other than
        ASCII letters, digits and ``. _ -``.
    """
    label = _label(index, value)
    if value is None:
        raise InvalidParcelError(f"{label}: tracking_number is missing (None)")
    if not isinstance(value, str):
        raise InvalidParcelError(f"{label}: tracking_number must be a string, got {type(value).__name__}")
    stripped = value.strip()
    if not stripped:
        raise InvalidParcelError(f"{label}: tracking_number is empty or white space only")
    if len(stripped) > MAX_TRACKING_NUMBER_LENGTH:
        raise InvalidParcelError(
            f"{_label(index, stripped[:20] + '...')}: tracking_number is {len(stripped)} characters long; "
            f"the limit is {MAX_TRACKING_NUMBER_LENGTH}"
        )
    if not TRACKING_NUMBER_PATTERN.match(stripped):
        bad = sorted({c for c in stripped if not (c.isascii() and (c.isalnum() or c in "._-"))})
        shown = ", ".join(repr(c) for c in bad[:5]) or "a leading . _ or -"
        raise InvalidParcelError(
            f"{label}: tracking_number may hold only ASCII letters, digits and . _ - (found {shown})"
        )
    return stripped


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


@dataclass(frozen=True)
class TrackingEvent:
    """
    One carrier scan.

    :param occurred_at: when it happened, in UTC; ``None`` when the API gives a local time
        without a zone (never guessed as UTC).
    :param occurred_at_local: the time exactly as the API wrote it.
    :param status: the canonical status of the event (``unknown`` when the API gives none).
    :param provider_status: the raw status value of the API, if any.
    :param description: what happened.
    :param location: where.
    :param raw: the event as the API sent it.
    """

    occurred_at: datetime | None
    occurred_at_local: str | None
    status: ParcelStatus
    provider_status: str | None
    description: str | None
    location: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @cached_property
    def event_id(self) -> str:
        """A stable hash of the event's content: the same scan always gets the same id."""
        content = "\x1f".join(
            str(part or "")
            for part in (
                _iso(self.occurred_at),
                self.occurred_at_local,
                self.provider_status,
                self.description,
                self.location,
            )
        )
        return hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]

    def to_dict(self, include_raw: bool = True) -> dict[str, Any]:
        """JSON-safe dict of the event."""
        data = {
            "event_id": self.event_id,
            "occurred_at": _iso(self.occurred_at),
            "occurred_at_local": self.occurred_at_local,
            "status": self.status.value,
            "provider_status": self.provider_status,
            "description": self.description,
            "location": self.location,
        }
        if include_raw:
            data["raw"] = dict(self.raw)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackingEvent:
        """Inverse of :meth:`to_dict`."""
        return cls(
            occurred_at=_from_iso(data.get("occurred_at")),
            occurred_at_local=data.get("occurred_at_local"),
            status=ParcelStatus.parse(data.get("status") or "unknown"),
            provider_status=data.get("provider_status"),
            description=data.get("description"),
            location=data.get("location"),
            raw=data.get("raw") or {},
        )


@dataclass(frozen=True)
class TrackingError:
    """
    Why a parcel has no tracking answer.

    :param code: short machine code (``not_found``, ``rate_limited``, ``server_error``,
        ``timeout``, ``malformed_response``, ``bad_request``, ``invalid_input``, ...).
    :param message: a human sentence; never contains a secret.
    """

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class TrackingResult:
    """
    What an API said about one parcel: one result per parcel handed in, errors included.

    :param provider: the API (``whereparcel``, ``trackingmore``, ``trackflow``, ``parcellab``,
        ``shipengine``).
    :param carrier: the carrier code as handed in.
    :param tracking_number: the tracking number as handed in.
    :param status: the canonical status; ``unknown`` when the request failed.
    :param provider_status: the API's own status value.
    :param error: set when the API could not track the parcel.
    :param events: the carrier events, newest first, de-duplicated.
    :param raw: the API's answer for this parcel.
    """

    provider: str
    carrier: str
    tracking_number: str
    status: ParcelStatus = ParcelStatus.UNKNOWN
    provider_status: str | None = None
    status_text: str | None = None
    client_id: str | None = None
    carrier_name: str | None = None
    estimated_delivery: datetime | None = None
    delivered_at: datetime | None = None
    origin_country: str | None = None
    destination_country: str | None = None
    events: tuple[TrackingEvent, ...] = ()
    error: TrackingError | None = None
    fetched_at: datetime = field(default_factory=_utcnow)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str, str]:
        """``(provider, carrier, tracking_number)``: the warehouse key."""
        return (self.provider, self.carrier, self.tracking_number)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def last_event(self) -> TrackingEvent | None:
        """The newest event (by UTC time where known, else the API's order)."""
        if not self.events:
            return None
        dated = [e for e in self.events if e.occurred_at is not None]
        return max(dated, key=lambda e: e.occurred_at) if dated else self.events[0]

    @classmethod
    def failure(
        cls,
        provider: str,
        parcel: Parcel,
        code: str,
        message: str,
        status: ParcelStatus = ParcelStatus.UNKNOWN,
        raw: Mapping[str, Any] | None = None,
    ) -> TrackingResult:
        """An error result for ``parcel``: an error row, not a gap."""
        return cls(
            provider=provider,
            carrier=parcel.carrier,
            tracking_number=parcel.tracking_number,
            client_id=parcel.client_id,
            status=status,
            error=TrackingError(code, message),
            raw=raw or {},
        )

    def to_dict(self, include_raw: bool = True, include_events: bool = True) -> dict[str, Any]:
        """JSON-safe dict; ``include_raw=False, include_events=False`` gives the compact XCom form."""
        data: dict[str, Any] = {
            "provider": self.provider,
            "carrier": self.carrier,
            "tracking_number": self.tracking_number,
            "client_id": self.client_id,
            "status": self.status.value,
            "provider_status": self.provider_status,
            "status_text": self.status_text,
            "carrier_name": self.carrier_name,
            "estimated_delivery": _iso(self.estimated_delivery),
            "delivered_at": _iso(self.delivered_at),
            "origin_country": self.origin_country,
            "destination_country": self.destination_country,
            "error": self.error.to_dict() if self.error else None,
            "fetched_at": _iso(self.fetched_at),
        }
        if include_events:
            data["events"] = [e.to_dict(include_raw=include_raw) for e in self.events]
        if include_raw:
            data["raw"] = dict(self.raw)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackingResult:
        """Inverse of :meth:`to_dict`."""
        error = data.get("error")
        return cls(
            provider=data["provider"],
            carrier=data["carrier"],
            tracking_number=data["tracking_number"],
            client_id=data.get("client_id"),
            status=ParcelStatus.parse(data.get("status") or "unknown"),
            provider_status=data.get("provider_status"),
            status_text=data.get("status_text"),
            carrier_name=data.get("carrier_name"),
            estimated_delivery=_from_iso(data.get("estimated_delivery")),
            delivered_at=_from_iso(data.get("delivered_at")),
            origin_country=data.get("origin_country"),
            destination_country=data.get("destination_country"),
            events=tuple(TrackingEvent.from_dict(e) for e in data.get("events") or ()),
            error=TrackingError(error["code"], error["message"]) if error else None,
            fetched_at=_from_iso(data.get("fetched_at")) or _utcnow(),
            raw=data.get("raw") or {},
        )


__all__ = [
    "MAX_TRACKING_NUMBER_LENGTH",
    "TERMINAL_STATUSES",
    "InvalidParcelError",
    "Parcel",
    "ParcelStatus",
    "TrackingError",
    "TrackingEvent",
    "TrackingResult",
    "validate_tracking_number",
]
