"""
OpenLineage facets of the operators: the API as an input dataset, the warehouse tables as outputs (with schema and
output statistics), and the source table of a ``parcels`` SQL query as an input.

Needs the ``openlineage`` extra (``apache-airflow-providers-openlineage``). Only the operators'
``get_openlineage_facets_on_complete`` import this module, and only the OpenLineage listener calls that: without
the extra the operators never get here.

Dataset names follow the OpenLineage naming spec (``Naming.md``):

* an API: namespace ``https://host[:port]`` of the connection's base URL, name the endpoint path
  (``/v1/tracking``);
* PostgreSQL: namespace ``postgres://host:port``, name ``database.schema.table``;
* SQLite and DuckDB (not in the spec; ours): namespace ``sqlite://<absolute file path>`` or
  ``duckdb://<absolute file path>``, name ``schema.table`` (SQLite, schema ``main``) or ``database.schema.table``
  (DuckDB, whose database is named after the file, as DuckDB itself calls it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from airflow.providers.common.compat.openlineage.facet import (
    Dataset,
    InputDataset,
    OutputDataset,
    OutputStatisticsOutputDatasetFacet,
    SchemaDatasetFacet,
    SchemaDatasetFacetFields,
)
from airflow.providers.openlineage.extractors import OperatorLineage

from airflow_provider_parcels.lineage.assets import DEFAULT_SCHEMAS, database_location

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

#: The resource each API's tracking reads, by provider (the input dataset's name). TrackingMore's trackings and
#: parcelLab's orders are the same names the order operators write to, so lineage links the two.
TRACKING_PATHS = {
    "whereparcel": "/v2/track",
    "trackingmore": "/trackings",
    "trackflow": "/v2/track",
    "parcellab": "/v4/track/orders/",
    "shipengine": "/v1/tracking",
}

#: OpenLineage schema facet types of the warehouse column kinds.
_FIELD_TYPES = {"text": "TEXT", "integer": "INTEGER", "timestamp": "TIMESTAMP"}


def api_namespace(base_url: str) -> str:
    """
    The OpenLineage namespace of an API: ``scheme://host[:port]`` of its base URL, without user info.

    :param base_url: the hook's base URL (``https://api.shipengine.com``, the sandbox's ``http://127.0.0.1:8765``).
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def api_dataset(base_url: str, path: str, output: bool = False, rows: int | None = None) -> Dataset:
    """
    An API resource as an OpenLineage dataset.

    :param base_url: the hook's base URL; its path (if any) goes before ``path``.
    :param path: the endpoint path.
    :param output: an output dataset (written to) rather than an input.
    :param rows: records written, for the output statistics.
    """
    base_path = urlsplit(base_url).path.rstrip("/")
    name = f"{base_path}{path}"
    if output:
        facets = {} if rows is None else {"outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=rows)}
        return OutputDataset(namespace=api_namespace(base_url), name=name, outputFacets=facets)
    return InputDataset(namespace=api_namespace(base_url), name=name)


def table_naming(conn: Connection, table: str, schema: str | None = None) -> tuple[str, str] | None:
    """
    ``(namespace, name)`` of a table per the OpenLineage naming spec (and this module's rule for SQLite, DuckDB).

    :param conn: the database connection.
    :param table: the table name as stored (with prefix).
    :param schema: its schema, or ``None`` for the database's default.
    :return: ``None`` for a database without a naming rule here (or an in-memory one).
    """
    location = database_location(conn)
    if location is None:
        return None
    scheme, authority, database = location
    schema = schema or DEFAULT_SCHEMAS[scheme]
    if scheme == "postgres":
        return f"postgres://{authority}", f"{database}.{schema}.{table}"
    if scheme == "sqlite":
        return f"sqlite://{database}", f"{schema}.{table}"
    stem = os.path.splitext(os.path.basename(database or ""))[0]
    return f"duckdb://{database}", f"{stem}.{schema}.{table}"


def _schema_facet(table: str) -> SchemaDatasetFacet:
    from airflow_provider_parcels.warehouse.rows import TABLES

    return SchemaDatasetFacet(
        fields=[SchemaDatasetFacetFields(name=name, type=_FIELD_TYPES.get(kind, kind.upper()))
                for name, kind in TABLES[table].columns]
    )


def warehouse_datasets(
    conn: Connection,
    table_prefix: str = "",
    schema: str | None = None,
    rows: Mapping[str, int] | None = None,
    tables: Sequence[str] = ("parcel_tracking", "parcel_tracking_events"),
    output: bool = True,
) -> list[Dataset]:
    """
    The warehouse tables as OpenLineage datasets, with their schema facet and (outputs) row counts.

    :param conn: the warehouse connection.
    :param table_prefix: the table prefix.
    :param schema: the schema, or ``None``.
    :param rows: rows written per table (without prefix), for ``outputStatistics``.
    :param tables: which tables.
    :param output: outputs (with statistics) or inputs.
    """
    datasets: list[Dataset] = []
    for table in tables:
        naming = table_naming(conn, f"{table_prefix}{table}", schema)
        if naming is None:
            continue
        namespace, name = naming
        facets = {"schema": _schema_facet(table)}
        if output:
            count = (rows or {}).get(table)
            stats = {} if count is None else {"outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=count)}
            datasets.append(OutputDataset(namespace=namespace, name=name, facets=facets, outputFacets=stats))
        else:
            datasets.append(InputDataset(namespace=namespace, name=name, facets=facets))
    return datasets


def sql_input_datasets(sql: str, conn: Connection) -> list[Dataset]:
    """
    The tables a ``parcels`` query reads, parsed by OpenLineage's SQL parser, named in the source database.

    :param sql: the rendered query.
    :param conn: the connection it runs on.
    """
    from airflow.providers.openlineage.sqlparser import SQLParser

    location = database_location(conn)
    if location is None:
        return []
    scheme = location[0]
    dialect = {"postgres": "postgres", "sqlite": "sqlite", "duckdb": "duckdb"}.get(scheme, "generic")
    meta = SQLParser(dialect=dialect).parse(sql)
    if meta is None:
        return []
    datasets: list[Dataset] = []
    for table in meta.in_tables:
        naming = table_naming(conn, table.name, table.schema)
        if naming is not None:
            datasets.append(InputDataset(namespace=naming[0], name=naming[1]))
    return datasets


def operator_lineage(inputs: Sequence[Dataset], outputs: Sequence[Dataset]) -> OperatorLineage:
    """
    The ``OperatorLineage`` an operator returns.

    :param inputs: input datasets.
    :param outputs: output datasets.
    """
    return OperatorLineage(inputs=list(inputs), outputs=list(outputs))


__all__ = [
    "TRACKING_PATHS",
    "api_dataset",
    "api_namespace",
    "operator_lineage",
    "sql_input_datasets",
    "table_naming",
    "warehouse_datasets",
]
