"""
The Airflow plugin that mounts the webhook receiver in the API server at ``/parcels/webhooks``
(``fastapi_apps``, Airflow 3.1+), so receiving pushes needs nothing new deployed. Registered
through the provider's ``plugins`` entry in ``get_provider_info``.

Plugin routes are not behind Airflow's login: every delivery is verified by the receiver itself
(TrackFlow's HMAC signature, WhereParcel's per-connection token).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_parcels.webhooks.app import URL_PREFIX, create_app


class ParcelsWebhooksPlugin(AirflowPlugin):
    """Mounts the parcels webhook receiver in the Airflow API server."""

    name = "parcels_webhooks"
    fastapi_apps = [
        {"app": create_app(emit_assets=True), "url_prefix": URL_PREFIX, "name": "Parcels webhook receiver"},
    ]
