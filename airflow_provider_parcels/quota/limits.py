"""The quotas of one API key: per minute (the whole key's, before ``quota_share``), per day, per month."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Connection extras the ledger reads (besides ``plan`` and ``requests_per_minute``).
QUOTA_EXTRAS = ("requests_per_day", "requests_per_month", "quota_store")

#: Day and month budgets by API and plan, from the vendors' docs, in the API's cost units:
#: (requests per day, requests per month); ``None`` where the doc gives none.
#: WhereParcel: per-minute and per-month quotas per key. TrackFlow: lookups per day (a batch
#: counts one per parcel). TrackingMore, parcelLab and ShipEngine document no day or month budget.
PLAN_BUDGETS: dict[str, dict[str, tuple[int | None, int | None]]] = {
    "whereparcel": {
        "free": (None, 5),
        "starter": (None, 10_000),
        "pro": (None, 30_000),
        "business": (None, 300_000),
    },
    "trackflow": {
        "free": (500, None),
        "starter": (10_000, None),
        "growth": (100_000, None),
        "enterprise": (None, None),
    },
}


@dataclass(frozen=True)
class QuotaLimits:
    """
    What one API key may use.

    :param requests_per_minute: the key's minute quota (all processes together), ``None``: no pacing.
    :param requests_per_day: units per UTC calendar day, ``None``: no day budget.
    :param requests_per_month: units per UTC calendar month, ``None``: no month budget.
    :param safety_margin: fraction of the minute quota left unused for network jitter.
    """

    requests_per_minute: float | None = None
    requests_per_day: float | None = None
    requests_per_month: float | None = None
    safety_margin: float = 0.02

    @property
    def interval(self) -> float:
        """Seconds per cost unit of the minute pacing (0 without a minute quota)."""
        rpm = self.requests_per_minute
        return 60.0 / (rpm * (1 - self.safety_margin)) if rpm else 0.0


def _number(conn_id: str, name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 1:
        # imported here: the hooks package imports Airflow, which the ledger alone does not need
        from airflow_provider_parcels.hooks.exceptions import ParcelConnectionError

        raise ParcelConnectionError(f"connection {conn_id!r}: extra {name!r} must be a number >= 1, got {value!r}")
    return number


def resolve_limits(
    *,
    conn_id: str,
    provider: str,
    extra: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    plans: Mapping[str, Any] | None = None,
    default_plan: str | None = None,
) -> QuotaLimits:
    """
    The key's quotas: the extras ``requests_per_minute``, ``requests_per_day`` and
    ``requests_per_month`` (or the hook's arguments, which win), else the plan's. ``quota_share``
    plays no part: it caps one process, not the key.

    :param conn_id: for error messages.
    :param provider: the API (``whereparcel``, ``trackflow``, ...), to look up :data:`PLAN_BUDGETS`.
    :param extra: the connection's extras.
    :param overrides: the hook's arguments.
    :param plans: the hook's plan table (name to an object with ``requests_per_minute``).
    :param default_plan: the plan when the connection names none.
    :raises ParcelConnectionError: a bad number, naming the extra.
    """
    merged = {k: extra.get(k) for k in ("plan", "requests_per_minute", *QUOTA_EXTRAS)}
    merged.update({k: v for k, v in (overrides or {}).items() if k in merged and v is not None})
    plan_name = str(merged.get("plan") or default_plan or "").strip().lower()
    plan = (plans or {}).get(plan_name) if plan_name else None
    day, month = PLAN_BUDGETS.get(provider, {}).get(plan_name, (None, None))
    rpm = _number(conn_id, "requests_per_minute", merged.get("requests_per_minute"))
    if rpm is None and plan is not None:
        rpm = getattr(plan, "requests_per_minute", None)
    return QuotaLimits(
        requests_per_minute=rpm,
        requests_per_day=_number(conn_id, "requests_per_day", merged.get("requests_per_day")) or day,
        requests_per_month=_number(conn_id, "requests_per_month", merged.get("requests_per_month")) or month,
    )


def quota_store_of(extra: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> str | None:
    """
    The connection id named by ``quota_store`` (argument, else extra), or ``None`` for the embedded file.

    :param extra: the connection's extras.
    :param overrides: the hook's arguments.
    """
    value = (overrides or {}).get("quota_store") or extra.get("quota_store")
    return str(value).strip() or None if value else None
