"""
Warehouse tables for tracking results: ``parcel_tracking`` (one row per parcel) and
``parcel_tracking_events`` (one row per carrier event), loaded by idempotent per-dialect upserts
over any common-sql ``DbApiHook`` connection (SQLite, PostgreSQL, DuckDB). Knows nothing of HTTP.
"""

from __future__ import annotations

from airflow_provider_parcels.warehouse.loader import LoadCounts, ParcelWarehouse, validate_identifier
from airflow_provider_parcels.warehouse.queries import OPEN_STATUSES

__all__ = ["OPEN_STATUSES", "LoadCounts", "ParcelWarehouse", "validate_identifier"]
