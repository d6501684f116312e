"""Reading a tracking connection: base URL, credentials and the quota extras, validated."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_parcels.hooks.exceptions import ParcelConnectionError
from airflow_provider_parcels.hooks.transport import DEFAULT_MAX_RESPONSE_BYTES, RetryPolicy

#: Extras every tracking connection understands.
COMMON_EXTRAS = (
    "plan",
    "requests_per_minute",
    "max_concurrency",
    "timeout",
    "batch_size",
    "max_retries",
    "quota_share",
    "scheme",
    "max_response_mb",
    "requests_per_day",
    "requests_per_month",
    "quota_store",
)
DEFAULT_TIMEOUT = 30.0
MAX_CONCURRENCY_LIMIT = 64


@dataclass(frozen=True)
class Plan:
    """
    A vendor plan as its documentation gives it.

    :param requests_per_minute: the per-minute quota (``None``: unlimited or undocumented).
    :param batch_size: the most parcels one tracking call may carry on this plan.
    """

    requests_per_minute: int | None
    batch_size: int


@dataclass(frozen=True)
class HookSettings:
    """
    Everything the transport needs, resolved from the connection and the hook's arguments.

    :param base_url: scheme, host, port and path prefix, without a trailing slash.
    :param requests_per_minute: the minute quota of this process (after the optional ``quota_share`` cap),
        or ``None``; the key's whole quota is shared through the quota ledger.
    :param batch_size: parcels per tracking call.
    :param max_concurrency: requests in flight at once.
    :param timeout: seconds one HTTP call may take, from connecting to the last byte of the answer.
    :param retry: the retry policy.
    :param max_response_bytes: the largest answer read (extra ``max_response_mb``, default 16 MiB);
        a larger one gives its parcels the error ``response_too_large``.
    """

    base_url: str
    requests_per_minute: float | None
    batch_size: int
    max_concurrency: int
    timeout: float
    retry: RetryPolicy
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


def _number(conn_id: str, name: str, value: Any, cast: type, minimum: float) -> Any:
    if value is None or value == "":
        return None
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise ParcelConnectionError(
            f"connection {conn_id!r}: extra {name!r} must be a number >= {minimum}, got {value!r}"
        ) from None
    if (isinstance(number, float) and not math.isfinite(number)) or number < minimum:
        raise ParcelConnectionError(
            f"connection {conn_id!r}: extra {name!r} must be a number >= {minimum}, got {value!r}"
        )
    return number


def build_base_url(conn_id: str, default: str, host: str | None, port: int | None, schema: str | None,
                   scheme: str | None = None) -> str:
    """
    The API's base URL: its documented default, or the connection's host.

    The host may carry a scheme, port and path prefix (``http://127.0.0.1:8765/shipengine``);
    without a scheme it gets ``scheme`` (extra) or ``https``; the connection's port is added
    when the host has none; the connection's schema field, when it is not ``http(s)``, is
    read as a path prefix (the URI form ``shipengine://:KEY@127.0.0.1:8765/shipengine``).
    """
    if not host:
        return default.rstrip("/")
    host = host.strip()
    if "://" not in host:
        host = f"{(scheme or 'https').lower()}://{host}"
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ParcelConnectionError(f"connection {conn_id!r}: host {host!r} is not an http(s) URL")
    netloc = parts.netloc
    if port and parts.port is None:
        netloc = f"{netloc}:{int(port)}"
    path = parts.path.rstrip("/")
    if schema and schema.lower() not in ("http", "https"):
        path = f"{path}/{schema.strip('/')}"
    return urlunsplit((parts.scheme, netloc, path, "", "")).rstrip("/")


def resolve_settings(
    *,
    conn_id: str,
    conn_type: str,
    extra: Mapping[str, Any],
    overrides: Mapping[str, Any],
    plans: Mapping[str, Plan],
    default_plan: str | None,
    max_batch_size: int,
    seconds_per_request: float,
    base_url: str,
) -> HookSettings:
    """
    Combine the plan table, the connection extras and the hook's arguments (which win).

    :raises ParcelConnectionError: naming the field and the accepted values.
    """
    merged = {k: extra.get(k) for k in COMMON_EXTRAS}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    plan_name = merged.get("plan") or default_plan
    plan = None
    if plan_name:
        plan = plans.get(str(plan_name).strip().lower())
        if plan is None:
            accepted = ", ".join(sorted(plans)) or "(none: this API documents no plans)"
            raise ParcelConnectionError(
                f"connection {conn_id!r}: unknown {conn_type} plan {plan_name!r}; accepted: {accepted}"
            )
    rpm = _number(conn_id, "requests_per_minute", merged.get("requests_per_minute"), float, 1)
    if rpm is None and plan is not None:
        rpm = plan.requests_per_minute
    share = _number(conn_id, "quota_share", merged.get("quota_share"), float, 0.0) or 1.0
    if share > 1:
        raise ParcelConnectionError(f"connection {conn_id!r}: extra 'quota_share' must be in (0, 1], got {share}")
    if rpm is not None:
        rpm = rpm * share
    plan_batch = plan.batch_size if plan else max_batch_size
    batch = _number(conn_id, "batch_size", merged.get("batch_size"), int, 1) or plan_batch
    if batch > plan_batch:
        raise ParcelConnectionError(
            f"connection {conn_id!r}: extra 'batch_size' {batch} exceeds the {conn_type} limit of {plan_batch}"
            + (f" on plan {plan_name!r}" if plan else "")
        )
    concurrency = _number(conn_id, "max_concurrency", merged.get("max_concurrency"), int, 1)
    if concurrency is None:
        # Enough requests in flight to use the quota while each answer takes its time.
        concurrency = math.ceil(rpm / 60 * seconds_per_request * 1.25) if rpm else 8
        concurrency = max(4, min(MAX_CONCURRENCY_LIMIT, concurrency))
    timeout = _number(conn_id, "timeout", merged.get("timeout"), float, 0.001) or DEFAULT_TIMEOUT
    retries = _number(conn_id, "max_retries", merged.get("max_retries"), int, 0)
    retry = RetryPolicy() if retries is None else RetryPolicy(max_retries=retries)
    max_mb = _number(conn_id, "max_response_mb", merged.get("max_response_mb"), float, 0.001)
    max_bytes = int(max_mb * 1024 * 1024) if max_mb is not None else DEFAULT_MAX_RESPONSE_BYTES
    return HookSettings(
        base_url=base_url,
        requests_per_minute=rpm,
        batch_size=batch,
        max_concurrency=concurrency,
        timeout=timeout,
        retry=retry,
        max_response_bytes=max_bytes,
    )
