"""parcelLab order fields and the payload validation of ``PUT``/``POST /v4/track/orders/``
(formats from the parcelLab doc; errors in Django REST framework's shape)."""

from __future__ import annotations

import re

AMOUNT = re.compile(r"^-?\d{0,8}(?:\.\d{0,2})?$")
AMOUNT_FIELDS = ("order_total_amount", "order_tax_amount", "order_net_amount", "order_discount_amount")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ISO3 = re.compile(r"^[A-Za-z]{3}$")
ISO2 = re.compile(r"^[A-Za-z]{2}$")
CANCEL_REASONS = ("customer", "inventory", "payment", "other")
MUTATION_TYPES = ("add_tracking", "cancel_tracking")
REQUIRED = "This field is required."

#: Order fields of ``GET /v4/track/orders/{id}/`` with their value when not given.
ORDER_FIELDS: dict[str, object] = {
    name: None for name in (
        "account", "order_number", "external_id", "external_reference", "client_key",
        "destination_country_iso3", "language_iso2", "shipping_address", "delivery_method",
        "recipient_email", "recipient_name", "customer_number", "invoice_number", "payment_method",
        "order_total_amount", "order_tax_amount", "order_net_amount", "order_discount_amount",
        "order_currency", "payments", "order_date", "channel", "announced_delivery_date",
        "announced_delivery_date_min", "announced_delivery_date_max", "articles_order", "billing_address",
        "timezone", "order_status", "has_multiple_shipments", "cancelled_date", "cancelled_reason",
        "additional_attributes", "tags")
}
ORDER_FIELDS.update({"payments": {}, "articles_order": [], "additional_attributes": [], "tags": []})

#: Tracking fields of an order's ``trackings`` with their value when not given.
TRACKING_FIELDS: dict[str, object] = {
    name: None for name in (
        "tracking_number", "client_key", "courier", "external_reference", "recipient_postal_code",
        "recipient_phone", "destination_country_iso3", "language_iso2", "timezone", "courier_service_level",
        "delivery_method", "shipping_address", "recipient_email", "recipient_name", "cancelled_date",
        "is_return", "identifiers_consignment", "delivery_number", "invoice_number", "shipping_cost_total",
        "shipping_cost_net", "shipping_cost_discount", "shipping_weight_total", "shipping_weight_unit",
        "shipping_volume_total", "shipping_volume_unit", "shipping_height", "shipping_width",
        "shipping_length", "shipping_dimensions_unit", "requires_signature", "is_dropshipment",
        "transport_number", "origin_country_iso3", "origin_region", "origin_postal_code", "articles",
        "warehouse", "courier_contact_name", "courier_contact_phone", "courier_contact_email", "review_link",
        "status_link", "collection_code_retailer", "collection_code_carrier", "announced_send_date",
        "announced_delivery_date", "announced_delivery_date_min", "announced_delivery_date_max",
        "notifications_inactive", "flags", "cash_on_delivery_amount", "tags", "checkpoints",
        "additional_fields", "courier_change_url", "is_returns_portal", "number_of_parcels", "pod_date",
        "pod_identifier", "pod_signature", "reporting_courier_dropoff_date", "reporting_delivery_date",
        "reporting_in_transit_date", "reporting_pickup_date", "security_hash", "support_phone")
}
TRACKING_FIELDS.update({"is_return": False, "is_returns_portal": False, "requires_signature": False,
                        "is_dropshipment": False, "notifications_inactive": False, "number_of_parcels": 1,
                        "articles": [], "tags": [], "flags": [], "checkpoints": []})


def validate(body: object) -> dict:
    """DRF-style field errors of an order payload ({} when valid).

    :param body: the parsed JSON body.
    """
    if not isinstance(body, dict):
        return {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(body).__name__}."]}
    errors: dict[str, object] = {}
    account = body.get("account")
    if account is None:
        errors["account"] = [REQUIRED]
    elif isinstance(account, bool) or not (isinstance(account, int) or (isinstance(account, str)
                                                                        and account.isdigit())):
        errors["account"] = ["A valid integer is required."]
    if not body.get("order_number") and not body.get("external_reference"):
        errors["non_field_errors"] = ["Either order_number or external_reference is required."]
    email = body.get("recipient_email")
    if email in (None, ""):
        errors["recipient_email"] = [REQUIRED]
    elif not isinstance(email, str) or (email != "_unset" and not EMAIL.match(email)):
        errors["recipient_email"] = ["Enter a valid email address."]
    for name in AMOUNT_FIELDS:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not AMOUNT.match(str(value))):
            errors[name] = [f"This value does not match the required pattern {AMOUNT.pattern}."]
    for name, pattern, what in (("destination_country_iso3", ISO3, "ISO 3166-1 alpha-3 country code"),
                                ("language_iso2", ISO2, "ISO 639-1 language code")):
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or not pattern.match(value)):
            errors[name] = [f"Enter a valid {what}."]
    reason = body.get("cancelled_reason")
    if reason is not None and reason not in CANCEL_REASONS:
        errors["cancelled_reason"] = [f'"{reason}" is not a valid choice.']
    mutations = _mutation_errors(body.get("mutations"))
    if mutations:
        errors["mutations"] = mutations
    return errors


def _mutation_errors(mutations: object) -> object:
    if mutations is None:
        return None
    if not isinstance(mutations, list):
        return [f'Expected a list of items but got type "{type(mutations).__name__}".']
    found, result = False, []
    for mutation in mutations:
        error: dict[str, object] = {}
        if not isinstance(mutation, dict):
            error["non_field_errors"] = ["Invalid data. Expected a dictionary."]
        else:
            kind = mutation.get("type")
            if kind not in MUTATION_TYPES:
                error["type"] = [REQUIRED] if kind is None else [f'"{kind}" is not a valid choice.']
            tracking = mutation.get("tracking")
            if not isinstance(tracking, dict):
                error["tracking"] = [REQUIRED]
            else:
                needed = ("tracking_number", "courier") if kind == "add_tracking" else ("tracking_number",)
                missing = {name: [REQUIRED] for name in needed if not tracking.get(name)}
                if missing:
                    error["tracking"] = missing
        found = found or bool(error)
        result.append(error)
    return result if found else None
