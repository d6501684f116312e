"""
Data awareness for the warehouse tables: Airflow assets (:mod:`.assets`) and OpenLineage facets
(:mod:`.openlineage`, usable only with the ``openlineage`` extra installed).

Nothing here needs OpenLineage: importing this package, or :mod:`.assets`, works without it.
"""

from __future__ import annotations

from airflow_provider_parcels.lineage.assets import (
    PARCELS_SCHEME,
    WAREHOUSE_TABLES,
    warehouse_table_assets,
    warehouse_table_uri,
)

__all__ = ["PARCELS_SCHEME", "WAREHOUSE_TABLES", "warehouse_table_assets", "warehouse_table_uri"]
