"""What Airflow's providers manager reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_parcels import __version__

_HOOKS = "airflow_provider_parcels.hooks"
#: Where the Providers page links to; the same URL is the ``Documentation`` project URL in
#: pyproject.toml, which Airflow 3 reads from the package metadata in place of this key.
DOCUMENTATION_URL = "https://pypi.org/project/airflow-provider-parcels/"


def _number(label: str, description: str, minimum: float = 0) -> dict[str, Any]:
    return {
        "label": label,
        "description": description,
        "schema": {"type": ["number", "null"], "minimum": minimum},
    }


def _quota_fields(plans: list[str]) -> dict[str, Any]:
    plan_help = (
        f"Plan name, one of: {', '.join(plans)}. Sets the per-minute quota and batch size from the vendor's table."
        if plans
        else "This API documents no plans; set requests_per_minute instead."
    )
    fields: dict[str, Any] = {}
    if plans:
        fields["plan"] = {
            "label": "Plan",
            "description": plan_help,
            # No None in the enum: the UI would offer it as a literal "null" plan; the dropdown
            # can be cleared instead.
            "schema": {"type": ["string", "null"], "enum": list(plans)},
        }
    fields.update(
        requests_per_minute=_number("Requests per minute", "Quota override; wins over the plan.", 1),
        max_concurrency=_number("Max concurrency", "Requests in flight at once (default from the quota).", 1),
        timeout=_number("Timeout (s)", "Seconds for each HTTP call (default 30).", 0.001),
        quota_share=_number("Quota share", "Optional cap on one process: fraction of the minute quota (0-1].", 0),
        requests_per_day=_number("Requests per day", "Day budget of the key (UTC day); wins over the plan.", 1),
        requests_per_month=_number("Requests per month", "Month budget of the key (UTC month); wins over the plan.",
                                   1),
        quota_store={
            "label": "Quota store",
            "description": "A redis, postgres or sqlite connection holding the key's shared quota ledger "
            "(default: a file under AIRFLOW_HOME, shared by the processes of one machine).",
            "schema": {"type": ["string", "null"]},
        },
        max_response_mb={
            "label": "Max response (MiB)",
            "description": "Largest answer accepted, in MiB (default 16).",
            "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
        },
    )
    return fields


def _connection(
    conn_type: str,
    module: str,
    cls: str,
    name: str,
    default_url: str,
    plans: list[str],
    relabel: dict[str, str],
    hidden: list[str],
    extra_fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    placeholders = {
        "host": f"{default_url} (leave empty for the vendor's API; may carry scheme, port and path)",
        "extra": '{"plan": "%s", "max_concurrency": 8, "timeout": 30}' % (plans[0] if plans else ""),
    }
    placeholders.update({field: label for field, label in relabel.items()})
    return {
        "hook-class-name": f"{_HOOKS}.{module}.{cls}",
        "hook-name": name,
        "connection-type": conn_type,
        "ui-field-behaviour": {
            "hidden-fields": hidden,
            "relabeling": relabel,
            "placeholders": placeholders,
        },
        "conn-fields": {**_quota_fields(plans), **(extra_fields or {})},
    }


#: Where a pushing connection's webhook events land (read by the receiver in the API server).
_WEBHOOK_WAREHOUSE_FIELDS: dict[str, Any] = {
    "warehouse_conn_id": {
        "label": "Webhook warehouse connection",
        "description": "Connection (sqlite, postgres, ...) whose parcel_tracking tables receive pushed events.",
        "schema": {"type": ["string", "null"]},
    },
    "table_prefix": {
        "label": "Webhook table prefix",
        "description": "Prefix of the warehouse tables pushed events land in.",
        "schema": {"type": ["string", "null"]},
    },
    "schema": {
        "label": "Webhook warehouse schema",
        "description": "Schema of the warehouse tables pushed events land in.",
        "schema": {"type": ["string", "null"]},
    },
}


def get_provider_info() -> dict[str, Any]:
    """Package name, version, modules and the five connection types with their forms."""
    return {
        "package-name": "airflow-provider-parcels",
        "name": "Parcels",
        "description": "Parcel tracking for Apache Airflow: WhereParcel, TrackingMore, TrackFlow, parcelLab and "
        "ShipEngine hooks, bulk tracking and order operators, a deferrable status sensor, warehouse loading "
        "and a local sandbox of all five APIs.",
        "versions": [__version__],
        "documentation-url": DOCUMENTATION_URL,
        "integrations": [
            {"integration-name": "Parcels", "tags": ["service"], "external-doc-url": DOCUMENTATION_URL}
        ],
        "hooks": [
            {
                "integration-name": "Parcels",
                "python-modules": [
                    f"{_HOOKS}.whereparcel",
                    f"{_HOOKS}.trackingmore",
                    f"{_HOOKS}.trackflow",
                    f"{_HOOKS}.parcellab",
                    f"{_HOOKS}.shipengine",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "Parcels",
                "python-modules": [
                    "airflow_provider_parcels.operators.tracking",
                    "airflow_provider_parcels.operators.orders",
                    "airflow_provider_parcels.operators.subscriptions",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "Parcels", "python-modules": ["airflow_provider_parcels.sensors.parcel_status"]}
        ],
        "triggers": [
            {"integration-name": "Parcels", "python-modules": ["airflow_provider_parcels.triggers.parcel_status"]}
        ],
        "notifications": ["airflow_provider_parcels.notifications.parcel_report.ParcelReportNotifier"],
        "connection-types": [
            _connection(
                "whereparcel", "whereparcel", "WhereParcelHook", "WhereParcel", "https://api.whereparcel.com",
                ["free", "starter", "pro", "business"],
                {"login": "API key", "password": "Secret key"},
                ["schema", "port"],
                {
                    "webhook_token": {
                        "label": "Webhook token",
                        "description": "Secret put in the webhook URL given to WhereParcel (which signs nothing); "
                        "the receiver compares it in constant time.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    **_WEBHOOK_WAREHOUSE_FIELDS,
                },
            ),
            _connection(
                "trackingmore", "trackingmore", "TrackingMoreHook", "TrackingMore", "https://api.trackingmore.com/v2",
                ["standard"],
                {"password": "API key"},
                ["schema", "port", "login"],
            ),
            _connection(
                "trackflow", "trackflow", "TrackFlowHook", "TrackFlow", "https://api.trackflow.io",
                ["free", "starter", "growth", "enterprise"],
                {"password": "API key"},
                ["schema", "port", "login"],
                {
                    "webhook_secret": {
                        "label": "Webhook secret",
                        "description": "Secret that signs X-TrackFlow-Signature (HMAC-SHA256) on webhooks.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    **_WEBHOOK_WAREHOUSE_FIELDS,
                },
            ),
            _connection(
                "parcellab", "parcellab", "ParcelLabHook", "parcelLab", "https://api.parcellab.com",
                [],
                {"password": "Token"},
                ["schema", "port", "login"],
                {
                    "account": {
                        "label": "Account",
                        "description": "parcelLab account id, added to orders that have none.",
                        "schema": {"type": ["integer", "string", "null"]},
                    }
                },
            ),
            _connection(
                "shipengine", "shipengine", "ShipEngineHook", "ShipEngine", "https://api.shipengine.com",
                ["advanced"],
                {"password": "API key"},
                ["schema", "port", "login"],
            ),
        ],
    }
