"""
Airflow assets for the warehouse tables.

Two kinds of URI, for two moments:

* **Declared at parse time** (the outlets Airflow schedules on): ``parcels://<warehouse_conn_id>/<schema>/<table>``
  (``parcels://<warehouse_conn_id>/<table>`` without a schema). Built from the operator's own arguments, with no
  connection lookup, so a DAG file parses without I/O and the same DAG has the same assets in every deployment,
  whatever host the connection points at there.
* **Resolved at execute time** (recorded in the asset event's extra as ``table_uri``, and the name of the
  OpenLineage datasets): the table's URI in Airflow's convention for its database, e.g.
  ``postgres://host:5432/database/schema/table``, from :func:`database_table_uri`. A user who declares that URI as
  an outlet of their own gets the same extra on it.

See ``docs/assets_and_lineage.md`` for the reasons.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import Asset

if TYPE_CHECKING:
    from airflow.sdk import Connection

#: The URI scheme of the parse-time assets of the warehouse tables.
PARCELS_SCHEME = "parcels"
#: The tables the provider writes, in the order :func:`warehouse_table_assets` returns them.
WAREHOUSE_TABLES: tuple[str, ...] = ("parcel_tracking", "parcel_tracking_events")
#: The asset group of the warehouse tables (shown in the UI's asset list).
ASSET_GROUP = "parcels"

#: Default schema per database, where ``schema`` is not given (the connection's default).
DEFAULT_SCHEMAS = {"postgres": "public", "postgresql": "public", "sqlite": "main", "duckdb": "main"}


def is_templated(value: Any) -> bool:
    """
    Whether a value is (or holds) a Jinja template, so it is only known once the task runs.

    :param value: an operator argument.
    """
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _check_table(table: str) -> str:
    if table not in WAREHOUSE_TABLES:
        raise ValueError(f"table must be one of {', '.join(WAREHOUSE_TABLES)}; got {table!r}")
    return table


def warehouse_table_uri(
    warehouse_conn_id: str, table: str = "parcel_tracking", table_prefix: str = "", schema: str | None = None
) -> str:
    """
    The parse-time URI of one warehouse table: ``parcels://<warehouse_conn_id>/<schema>/<prefix><table>``.

    No connection is looked up. The conn id is percent-encoded where it holds characters a URI host cannot.

    :param warehouse_conn_id: the warehouse connection's id, as given to the operator.
    :param table: ``parcel_tracking`` or ``parcel_tracking_events`` (without prefix).
    :param table_prefix: the operator's ``table_prefix``.
    :param schema: the operator's ``schema``; ``None`` leaves the segment out.
    :raises ValueError: on an empty or templated argument, or an unknown table.
    """
    for name, value in (("warehouse_conn_id", warehouse_conn_id), ("table_prefix", table_prefix), ("schema", schema)):
        if is_templated(value):
            raise ValueError(
                f"{name}={value!r} is a template, only known when the task runs; declare the outlets with "
                "warehouse_table_assets() and the connection id the template renders to"
            )
    if not warehouse_conn_id or not isinstance(warehouse_conn_id, str):
        raise ValueError(f"warehouse_conn_id must be a non-empty string; got {warehouse_conn_id!r}")
    _check_table(table)
    host = quote(warehouse_conn_id, safe="-._~")
    parts = [quote(schema, safe="")] if schema else []
    parts.append(quote(f"{table_prefix or ''}{table}", safe=""))
    return f"{PARCELS_SCHEME}://{host}/" + "/".join(parts)


def warehouse_table_asset(
    warehouse_conn_id: str, table: str = "parcel_tracking", table_prefix: str = "", schema: str | None = None
) -> Asset:
    """
    The parse-time :class:`~airflow.sdk.Asset` of one warehouse table (name and URI are the same string).

    :param warehouse_conn_id: the warehouse connection's id.
    :param table: ``parcel_tracking`` or ``parcel_tracking_events`` (without prefix).
    :param table_prefix: the table prefix.
    :param schema: the schema, or ``None``.
    """
    uri = warehouse_table_uri(warehouse_conn_id, table, table_prefix, schema)
    return Asset(name=uri, uri=uri, group=ASSET_GROUP)


def warehouse_table_assets(
    warehouse_conn_id: str, table_prefix: str = "", schema: str | None = None
) -> list[Asset]:
    """
    The assets of both warehouse tables, ``[parcel_tracking, parcel_tracking_events]``: what the tracking operator
    and the webhook ingest declare as outlets, and what a consumer DAG schedules on
    (``schedule=warehouse_table_assets("warehouse")[:1]``). Pure: no connection is looked up.

    :param warehouse_conn_id: the warehouse connection's id.
    :param table_prefix: the table prefix.
    :param schema: the schema, or ``None``.
    :raises ValueError: when an argument is a Jinja template (see :func:`warehouse_table_uri`).
    """
    return [warehouse_table_asset(warehouse_conn_id, table, table_prefix, schema) for table in WAREHOUSE_TABLES]


def table_of_uri(uri: str) -> str | None:
    """
    Which warehouse table a ``parcels://`` URI names (without prefix), or ``None`` for another URI.

    :param uri: an asset URI.
    """
    if not uri.startswith(f"{PARCELS_SCHEME}://"):
        return None
    last = uri.rstrip("/").rsplit("/", 1)[-1]
    for table in sorted(WAREHOUSE_TABLES, key=len, reverse=True):
        if last.endswith(table):
            return table
    return None


def database_location(conn: Connection) -> tuple[str, str, str | None] | None:
    """
    Where a warehouse connection's database is, as ``(scheme, authority, database)``: e.g.
    ``("postgres", "db.example.com:5432", "warehouse")`` or ``("sqlite", "", "/data/wh.db")``. Reads only the
    connection object handed in.

    :param conn: the warehouse connection (execute time).
    :return: ``None`` for a database this provider has no naming rule for (or an in-memory one).
    """
    conn_type = (conn.conn_type or "").lower()
    if conn_type in ("postgres", "postgresql"):
        host = conn.host or "localhost"
        return "postgres", f"{host}:{conn.port or 5432}", conn.schema or conn.login or "postgres"
    if conn_type in ("sqlite", "duckdb"):
        path = conn.host or ""
        if not path or path == ":memory:" or path.startswith("file::memory:"):
            return None
        if path.startswith("file:"):
            path = path[len("file:") :].split("?", 1)[0]
        return conn_type, "", os.path.abspath(os.path.expanduser(path))
    return None


def database_table_uri(conn: Connection, table: str, table_prefix: str = "", schema: str | None = None) -> str | None:
    """
    The URI of a warehouse table in Airflow's asset convention for its database, built at execute time:

    * PostgreSQL: ``postgres://host:port/database/schema/table`` (the postgres provider's scheme; the schema
      defaults to ``public``);
    * SQLite and DuckDB (no Airflow convention exists; ours): ``sqlite:///<absolute file path>/<schema>/<table>``
      and ``duckdb:///<absolute file path>/<schema>/<table>``, the schema defaulting to ``main``: the database
      file's path, then the two names, like PostgreSQL's ``/database/schema/table``.

    :param conn: the warehouse connection (looked up by the caller, at execute time).
    :param table: ``parcel_tracking`` or ``parcel_tracking_events`` (without prefix).
    :param table_prefix: the table prefix.
    :param schema: the schema, or ``None`` for the database's default.
    :return: ``None`` for another database, or an in-memory one.
    """
    location = database_location(conn)
    if location is None:
        return None
    scheme, authority, database = location
    name = f"{table_prefix or ''}{_check_table(table)}"
    schema = schema or DEFAULT_SCHEMAS[scheme]
    if scheme == "postgres":
        return f"postgres://{authority}/{database}/{schema}/{name}"
    return f"{scheme}://{quote(database or '', safe='/:')}/{schema}/{name}"


__all__ = [
    "ASSET_GROUP",
    "PARCELS_SCHEME",
    "WAREHOUSE_TABLES",
    "database_location",
    "database_table_uri",
    "is_templated",
    "table_of_uri",
    "warehouse_table_asset",
    "warehouse_table_assets",
    "warehouse_table_uri",
]
