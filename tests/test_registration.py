"""The installed package registers with Airflow: providers list, connection types, hooks, forms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_parcels.get_provider_info import get_provider_info

TYPES = {
    "whereparcel": "airflow_provider_parcels.hooks.whereparcel.WhereParcelHook",
    "trackingmore": "airflow_provider_parcels.hooks.trackingmore.TrackingMoreHook",
    "trackflow": "airflow_provider_parcels.hooks.trackflow.TrackFlowHook",
    "parcellab": "airflow_provider_parcels.hooks.parcellab.ParcelLabHook",
    "shipengine": "airflow_provider_parcels.hooks.shipengine.ShipEngineHook",
}


def airflow_cli(*args: str) -> str:
    airflow = Path(sys.executable).with_name("airflow")
    out = subprocess.run([str(airflow), *args], capture_output=True, text=True, env=os.environ.copy(), timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.smoke
def test_airflow_providers_list_shows_the_package():
    providers = json.loads(airflow_cli("providers", "list", "-o", "json"))
    ours = [p for p in providers if p["package_name"] == "airflow-provider-parcels"]
    assert ours, [p["package_name"] for p in providers]
    from airflow_provider_parcels import __version__

    assert ours[0]["version"] == __version__


@pytest.mark.smoke
def test_providers_manager_has_connection_types_hooks_and_forms():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-parcels" in manager.providers
    hooks = manager.hooks
    for conn_type, class_name in TYPES.items():
        assert hooks[conn_type] is not None, conn_type
        assert hooks[conn_type].hook_class_name == class_name
        assert hooks[conn_type].connection_type == conn_type
    widgets = manager.connection_form_widgets
    assert "extra__whereparcel__plan" in widgets
    assert widgets["extra__trackflow__webhook_secret"].is_sensitive
    assert not widgets["extra__trackflow__plan"].is_sensitive
    behaviours = manager.field_behaviours
    assert behaviours["whereparcel"]["relabeling"] == {"login": "API key", "password": "Secret key"}
    assert behaviours["parcellab"]["relabeling"] == {"password": "Token"}
    assert "login" in behaviours["shipengine"]["hidden_fields"]


def test_provider_info_shape():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-parcels"
    assert {c["connection-type"] for c in info["connection-types"]} == set(TYPES)
    for conn in info["connection-types"]:
        fields = conn["conn-fields"]
        assert {"requests_per_minute", "max_concurrency", "timeout"} <= set(fields)
        assert conn["ui-field-behaviour"]["placeholders"]["host"]


def test_plan_dropdown_offers_no_literal_null():
    # The UI lists every enum value: a None there showed up as a plan called "null".
    plans = {conn["connection-type"]: conn["conn-fields"]["plan"]["schema"]
             for conn in get_provider_info()["connection-types"] if "plan" in conn["conn-fields"]}
    assert set(plans) == {"whereparcel", "trackingmore", "trackflow", "shipengine"}
    for conn_type, schema in plans.items():
        assert None not in schema["enum"] and "null" not in schema["enum"], conn_type
        assert schema["enum"] and all(isinstance(plan, str) for plan in schema["enum"]), conn_type


@pytest.mark.smoke
def test_providers_page_links_to_documentation_that_exists():
    # Without a "Documentation" project URL, Airflow's UI links to
    # https://airflow.apache.org/docs/airflow-provider-parcels/<version>/, which does not exist.
    from airflow.providers_manager import ProvidersManager

    from airflow_provider_parcels.get_provider_info import DOCUMENTATION_URL

    info = ProvidersManager().providers["airflow-provider-parcels"]
    # Airflow 3.2 keeps the space after "Documentation," of the Project-URL line (a browser
    # trims it from the link); 3.3 strips it.
    assert info.data["documentation-url"].strip() == DOCUMENTATION_URL
    assert get_provider_info()["documentation-url"] == DOCUMENTATION_URL
    assert "airflow.apache.org" not in DOCUMENTATION_URL
