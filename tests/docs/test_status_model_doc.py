"""docs/status_model.md shows exactly the hook modules' StatusMaps, and every canonical status."""

from __future__ import annotations

import re

import pytest
from docblocks import ROOT

from airflow_provider_parcels.hooks.parsing import normalize_word
from airflow_provider_parcels.models import ParcelStatus

DOC = ROOT / "docs" / "status_model.md"
SECTIONS = {
    "WhereParcel": "airflow_provider_parcels.hooks.whereparcel:WHEREPARCEL_STATUS",
    "TrackingMore": "airflow_provider_parcels.hooks.trackingmore:TRACKINGMORE_STATUS",
    "TrackFlow": "airflow_provider_parcels.hooks.trackflow:TRACKFLOW_STATUS",
    "parcelLab": "airflow_provider_parcels.hooks.parcellab:PARCELLAB_STATUS",
    "ShipEngine": "airflow_provider_parcels.hooks.shipengine:SHIPENGINE_STATUS",
}
ROW = re.compile(r"^\|\s*`(?P<value>[^`]+)`\s*\|\s*`(?P<status>[a-z_]+)`\s*\|\s*$")

pytestmark = pytest.mark.skipif(not DOC.is_file(), reason="no docs/ here (a copy of the tests)")


def section_rows(heading: str) -> dict[str, str]:
    """``provider value -> status`` from the two-column table under ``### heading``."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n### {heading}\n")
    end = text.find("\n#", start + 1)
    rows = {}
    for line in text[start:end if end > 0 else None].splitlines():
        if match := ROW.match(line.strip()):
            rows[match["value"]] = match["status"]
    return rows


@pytest.mark.parametrize("heading", SECTIONS)
def test_each_api_table_is_its_status_map(heading):
    from airflow.sdk.module_loading import import_string

    status_map = import_string(SECTIONS[heading].replace(":", "."))
    rows = section_rows(heading)
    assert rows, f"no table under ### {heading}"
    for value, status in rows.items():
        assert status_map(value) is ParcelStatus(status), (heading, value, status)
    documented = {normalize_word(value) for value in rows}
    assert documented == set(status_map._map), (heading, set(status_map._map) ^ documented)


def test_every_canonical_status_is_described():
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("## Canonical statuses"):text.index("## How the provider values map")]
    for status in ParcelStatus:
        assert f"| `{status.value}` |" in table, status
