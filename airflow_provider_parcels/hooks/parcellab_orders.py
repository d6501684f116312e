"""
Checks of a parcelLab order before it is sent, from the fields and formats the v4 doc gives.

Required: ``account`` (an integer; the connection's extra ``account`` fills it in), an
``order_number`` or ``external_reference`` usable as the order's id in URLs (the doc's
pattern ``^(?!info)[^/.]+$``), and ``recipient_email`` (an address, or the doc's literal
``_unset``). Formats: the four amount fields match ``^-?\\d{0,8}(?:\\.\\d{0,2})?$``,
``destination_country_iso3`` is three letters, ``language_iso2`` two, ``order_currency``
three; ``mutations`` is a list of objects with a ``type``, and an ``add_tracking``
mutation's ``tracking`` has ``tracking_number`` and ``courier``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_parcels.hooks.parcellab import UNIQUE_ID

AMOUNT = re.compile(r"^-?\d{0,8}(?:\.\d{0,2})?$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
AMOUNT_FIELDS = ("order_total_amount", "order_tax_amount", "order_net_amount", "order_discount_amount")
LETTER_CODES = {"destination_country_iso3": 3, "language_iso2": 2, "order_currency": 3}


class InvalidOrderError(ValueError):
    """An order that parcelLab would refuse; the message names the order and the field."""


def order_key(order: Any) -> str:
    if isinstance(order, Mapping):
        return str(order.get("order_number") or order.get("external_reference") or "")
    return ""


def validate_order(order: Any, index: int, account: Any = None) -> dict[str, Any]:
    """
    Check one order and return it ready to send (``account`` filled in).

    :param order: the order payload.
    :param index: its position in the input, for the message.
    :param account: the connection's default account.
    :raises InvalidOrderError: naming the order and the first bad field.
    """
    if not isinstance(order, Mapping):
        raise InvalidOrderError(f"order #{index}: expected a mapping, got {type(order).__name__}")
    label = f"order #{index} ({order_key(order) or 'no order_number'})"

    def bad(field: str, why: str) -> InvalidOrderError:
        return InvalidOrderError(f"{label}: {field} {why}")

    body = {k: v for k, v in order.items() if not _is_missing(v)}
    if body.get("account") is None and account is not None:
        body["account"] = account
    try:
        body["account"] = int(body["account"])
    except KeyError:
        raise bad("account", "is required (or set the connection's extra 'account')") from None
    except (TypeError, ValueError):
        raise bad("account", f"must be an integer, got {body['account']!r}") from None
    key = body.get("order_number") or body.get("external_reference")
    if not key:
        raise bad("order_number", "or external_reference is required")
    if not isinstance(key, str) or not UNIQUE_ID.match(key) or len(key) > 128:
        raise bad("order_number", f"{key!r} cannot identify an order (no '/', '.', not starting with 'info')")
    email = body.get("recipient_email")
    if not isinstance(email, str) or not (email == "_unset" or EMAIL.match(email)):
        raise bad("recipient_email", "must be an email address or the literal '_unset'")
    for field in AMOUNT_FIELDS:
        if field in body and not AMOUNT.match(str(body[field])):
            raise bad(field, f"must be a decimal with at most 8 digits and 2 decimals, got {body[field]!r}")
    for field, size in LETTER_CODES.items():
        value = body.get(field)
        if value is not None and not (isinstance(value, str) and value.isalpha() and len(value) == size):
            raise bad(field, f"must be a {size}-letter code, got {value!r}")
    mutations = body.get("mutations")
    if mutations is not None:
        if not isinstance(mutations, list):
            raise bad("mutations", "must be a list")
        for number, mutation in enumerate(mutations):
            if not isinstance(mutation, Mapping) or not mutation.get("type"):
                raise bad(f"mutations[{number}]", "must be an object with a type")
            if mutation["type"] == "add_tracking":
                tracking = mutation.get("tracking")
                if not isinstance(tracking, Mapping) or not tracking.get("tracking_number") or not tracking.get(
                    "courier"
                ):
                    raise bad(f"mutations[{number}].tracking", "needs tracking_number and courier")
    return body


def _is_missing(value: Any) -> bool:
    try:
        return value is None or value != value
    except Exception:
        return False
