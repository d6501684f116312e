"""
What differs between the databases the warehouse writes to, and nothing else.

Every dialect speaks ``INSERT ... ON CONFLICT``; they differ in type names, transaction control,
how the number of inserted versus updated rows is learned, and the bulk path (``COPY`` on
PostgreSQL). The SQL shared by all of them is built by :class:`Dialect`.
"""

from __future__ import annotations

import io
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from operator import itemgetter
from typing import Any, ClassVar

from airflow_provider_parcels.warehouse.rows import EVENTS, INT, PARCELS, TEXT, TS, TableSpec

Row = tuple[Any, ...]


def quote(identifier: str) -> str:
    """Quote an identifier (names are validated before they get here; quotes are doubled anyway)."""
    return '"' + identifier.replace('"', '""') + '"'


def _columns(names: Sequence[str], ref: str = "") -> str:
    return ", ".join(f"{ref}{quote(name)}" for name in names)


def _chunks(rows: Sequence[Row], size: int) -> Iterator[Sequence[Row]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _flat(rows: Sequence[Row]) -> list[Any]:
    """The parameters of a multi-row ``VALUES`` list."""
    return list(chain.from_iterable(rows))


@dataclass(frozen=True)
class TableNames:
    """
    Where the two tables live.

    :param prefix: validated table prefix (may be empty).
    :param schema: validated schema name, or ``None`` for the connection's default.
    """

    prefix: str = ""
    schema: str | None = None

    def bare(self, spec: TableSpec) -> str:
        """The quoted table name without schema."""
        return quote(self.prefix + spec.name)

    def table(self, spec: TableSpec) -> str:
        """The quoted, schema-qualified table name."""
        return f"{quote(self.schema)}.{self.bare(spec)}" if self.schema else self.bare(spec)

    @property
    def status_index(self) -> str:
        return quote(f"{self.prefix}{PARCELS.name}_status")


class Dialect:
    """
    The SQL every supported database shares, with hooks for what differs.

    Subclasses set class attributes and override the few methods whose behaviour differs.
    """

    name: ClassVar[str] = "generic"
    placeholder: ClassVar[str] = "?"
    types: ClassVar[dict[str, str]] = {TEXT: "TEXT", INT: "INTEGER", TS: "TIMESTAMPTZ"}
    distinct: ClassVar[str] = "IS DISTINCT FROM"
    supports_schema: ClassVar[bool] = True
    status_index: ClassVar[bool] = True
    has_bulk_path: ClassVar[bool] = False
    #: Whether text columns can hold the NUL character (else it is loaded as U+FFFD).
    text_allows_nul: ClassVar[bool] = True
    #: Whether ``INSERT INTO x AS t`` is accepted (else the upsert refers to the bare table name).
    target_alias: ClassVar[bool] = True
    max_params: ClassVar[int] = 32766
    max_rows_per_statement: ClassVar[int] = 1000

    # values -------------------------------------------------------------------------------
    @staticmethod
    def ts_param(value: datetime | None) -> Any:
        """A UTC ``datetime`` as the driver should receive it."""
        return value

    @staticmethod
    def ts_read(value: Any) -> datetime | None:
        """A timestamp read back, as an aware UTC ``datetime``."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    # connections and transactions ---------------------------------------------------------
    def prepare(self, conn: Any) -> None:
        """Set up a fresh connection."""

    @contextmanager
    def cursor(self, conn: Any) -> Iterator[Any]:
        """A cursor for one unit of work, closed afterwards."""
        with closing(conn.cursor()) as cur:
            yield cur

    def begin(self, conn: Any, cur: Any) -> None:
        """Open the write transaction (drivers that open one implicitly need nothing)."""

    def commit(self, conn: Any) -> None:
        conn.commit()

    def rollback(self, conn: Any) -> None:
        conn.rollback()

    def end_read(self, conn: Any) -> None:
        """End the read transaction a query may have opened, so no lock or snapshot is held."""

    # DDL ----------------------------------------------------------------------------------
    def create_table(self, names: TableNames, spec: TableSpec) -> str:
        required = set(spec.key) | set(spec.required)
        columns = ",\n    ".join(
            f"{quote(col)} {self.types[kind]}{' NOT NULL' if col in required else ''}" for col, kind in spec.columns
        )
        return (
            f"CREATE TABLE IF NOT EXISTS {names.table(spec)} (\n    {columns},\n"
            f"    PRIMARY KEY ({_columns(spec.key)})\n)"
        )

    def ddl(self, names: TableNames) -> list[str]:
        """The statements creating schema, tables and index, all idempotent."""
        statements = []
        if names.schema and self.supports_schema:
            statements.append(f"CREATE SCHEMA IF NOT EXISTS {quote(names.schema)}")
        statements += [self.create_table(names, PARCELS), self.create_table(names, EVENTS)]
        if self.status_index:
            # status first for "open parcels"; the key after it lets open_parcels page in key order.
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {names.status_index} ON {names.table(PARCELS)} "
                f"({_columns(('status', *PARCELS.key))})"
            )
        return statements

    # SQL shared by all dialects -----------------------------------------------------------
    def values(self, rows: int, width: int) -> str:
        one = "(" + ", ".join([self.placeholder] * width) + ")"
        return "VALUES " + ", ".join([one] * rows)

    def upsert_sql(self, names: TableNames, source: str) -> str:
        """
        The parcel upsert from ``source`` (a ``VALUES`` list or a ``SELECT``).

        The guard lets a row through only when it is newer, or equally new and different: an
        older fetch never overwrites a newer one, and re-loading the same fetch rewrites nothing
        (so those rows are counted as unchanged).
        """
        table = names.table(PARCELS)
        into, ref = (f"{table} AS t", "t") if self.target_alias else (table, names.bare(PARCELS))
        sets = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in PARCELS.non_key)
        differs = " OR ".join(
            f"{ref}.{quote(c)} {self.distinct} excluded.{quote(c)}" for c in PARCELS.non_key if c != "fetched_at"
        )
        fetched = quote("fetched_at")
        return (
            f"INSERT INTO {into} ({_columns(PARCELS.names)}) {source} "
            f"ON CONFLICT ({_columns(PARCELS.key)}) DO UPDATE SET {sets} "
            f"WHERE {ref}.{fetched} < excluded.{fetched} "
            f"OR ({ref}.{fetched} = excluded.{fetched} AND ({differs}))"
        )

    def insert_events_sql(self, names: TableNames, source: str) -> str:
        return (
            f"INSERT INTO {names.table(EVENTS)} ({_columns(EVENTS.names)}) {source} "
            f"ON CONFLICT ({_columns(EVENTS.key)}) DO NOTHING"
        )

    def rows_per_statement(self, conn: Any, width: int) -> int:
        return max(1, min(self.max_rows_per_statement, self.max_params_for(conn) // width))

    def max_params_for(self, conn: Any) -> int:
        return self.max_params

    # writes -------------------------------------------------------------------------------
    def upsert_parcels(
        self, conn: Any, cur: Any, names: TableNames, rows: Sequence[Row], bulk: bool
    ) -> tuple[int, int, int]:
        """
        Upsert de-duplicated parcel rows.

        :return: ``(inserted, updated, unchanged)``.
        """
        existing = self.count_existing(conn, cur, names, rows)
        written = self.write(conn, cur, rows, len(PARCELS.names), lambda src: self.upsert_sql(names, src))
        inserted = len(rows) - existing
        updated = written - inserted
        return inserted, updated, existing - updated

    def insert_events(self, conn: Any, cur: Any, names: TableNames, rows: Sequence[Row], bulk: bool) -> tuple[int, int]:
        """
        Insert de-duplicated event rows, leaving events already stored alone.

        :return: ``(inserted, unchanged)``.
        """
        inserted = self.write(conn, cur, rows, len(EVENTS.names), lambda src: self.insert_events_sql(names, src))
        return inserted, len(rows) - inserted

    def count_existing(self, conn: Any, cur: Any, names: TableNames, rows: Sequence[Row]) -> int:
        """How many of the (distinct) parcel keys in ``rows`` are stored already."""
        width = len(PARCELS.key)
        total = 0
        for chunk in _chunks(rows, self.rows_per_statement(conn, width)):
            sql = (
                f"WITH v(p, c, n) AS ({self.values(len(chunk), width)}) "
                f"SELECT count(*) FROM v JOIN {names.table(PARCELS)} AS t "
                f'ON t."provider" = v.p AND t."carrier" = v.c AND t."tracking_number" = v.n'
            )
            cur.execute(sql, [value for row in chunk for value in row[:width]])  # keys only
            total += cur.fetchone()[0]
        return total

    def write(self, conn: Any, cur: Any, rows: Sequence[Row], width: int, build: Any) -> int:
        """Run ``build(VALUES ...)`` over ``rows`` in multi-row chunks; return the rows written."""
        size = self.rows_per_statement(conn, width)
        statements: dict[int, str] = {}
        written = 0
        for chunk in _chunks(rows, size):
            sql = statements.get(len(chunk))
            if sql is None:
                sql = statements[len(chunk)] = build(self.values(len(chunk), width))
            written += self.execute_counting(conn, cur, sql, _flat(chunk))
        return written

    def execute_counting(self, conn: Any, cur: Any, sql: str, params: list[Any]) -> int:
        """Execute a write and return how many rows it inserted or updated."""
        cur.execute(sql + " RETURNING 1", params)
        return len(cur.fetchall())


class SqliteDialect(Dialect):
    """SQLite 3.24+: timestamps as fixed-format ISO-8601 UTC text, counts from ``total_changes``."""

    name = "sqlite"
    types = {TEXT: "TEXT", INT: "INTEGER", TS: "TEXT"}
    distinct = "IS NOT"
    supports_schema = False
    max_rows_per_statement = 500

    @staticmethod
    def ts_param(value: datetime | None) -> Any:
        # Always ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``: one width, so text order is time order.
        return value.isoformat(timespec="microseconds") if value is not None else None

    def prepare(self, conn: Any) -> None:
        if sqlite3.sqlite_version_info < (3, 24, 0):
            raise RuntimeError(f"the warehouse needs SQLite 3.24+ for upserts; found {sqlite3.sqlite_version}")
        conn.isolation_level = None  # we issue BEGIN / COMMIT ourselves
        conn.execute("PRAGMA busy_timeout = 60000")

    def begin(self, conn: Any, cur: Any) -> None:
        # IMMEDIATE takes the write lock up front: concurrent loaders queue instead of deadlocking.
        cur.execute("BEGIN IMMEDIATE")

    def commit(self, conn: Any) -> None:
        if conn.in_transaction:
            conn.execute("COMMIT")

    def rollback(self, conn: Any) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def max_params_for(self, conn: Any) -> int:
        if hasattr(conn, "getlimit"):  # Python 3.11+
            return conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999

    def execute_counting(self, conn: Any, cur: Any, sql: str, params: list[Any]) -> int:
        before = conn.total_changes
        cur.execute(sql, params)
        return conn.total_changes - before


class PostgresDialect(Dialect):
    """
    PostgreSQL: ``TIMESTAMPTZ``, counts from ``RETURNING (xmax = 0)``, bulk loads through ``COPY``.

    Rows are written in key order (sorted here for ``VALUES``, by the server from the stage table),
    so concurrent loaders of the same parcels take their row locks in one order and never deadlock.

    Works with the psycopg (3) and the psycopg2 connections ``PostgresHook`` may hand out: binary
    ``COPY`` and native ``$n`` placeholders on psycopg 3 (it re-parses a long ``%s`` query in Python
    on every call), text ``COPY`` and ``%s`` on psycopg2.
    """

    name = "postgres"
    placeholder = "%s"
    has_bulk_path = True
    text_allows_nul = False
    max_params = 65535
    copy_types: ClassVar[dict[str, str]] = {TEXT: "text", INT: "int4", TS: "timestamptz"}

    def end_read(self, conn: Any) -> None:
        conn.rollback()

    def ddl(self, names: TableNames) -> list[str]:
        # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog: serialise them.
        lock = "SELECT pg_advisory_xact_lock(hashtext('airflow_provider_parcels.warehouse'))"
        return [lock, *super().ddl(names)]

    def upsert_parcels(
        self, conn: Any, cur: Any, names: TableNames, rows: Sequence[Row], bulk: bool
    ) -> tuple[int, int, int]:
        counted = "WITH up AS ({} RETURNING (t.xmax = 0) AS ins) SELECT count(*) FILTER (WHERE ins), count(*) FROM up"
        inserted = written = 0
        rows = rows if bulk else sorted(rows, key=_KEY[PARCELS.name])
        if bulk:
            cur.execute(counted.format(self.upsert_sql(names, self._stage(cur, names, PARCELS, rows))))
            inserted, written = cur.fetchone()
        else:
            with self._values_cursor(conn, cur) as (vcur, numbered):
                for chunk, values in self._values(conn, rows, len(PARCELS.names), numbered):
                    vcur.execute(counted.format(self.upsert_sql(names, values)), chunk)
                    got_inserted, got_written = vcur.fetchone()
                    inserted, written = inserted + got_inserted, written + got_written
        return inserted, written - inserted, len(rows) - written

    def insert_events(self, conn: Any, cur: Any, names: TableNames, rows: Sequence[Row], bulk: bool) -> tuple[int, int]:
        inserted = 0
        rows = rows if bulk else sorted(rows, key=_KEY[EVENTS.name])
        if bulk:
            cur.execute(self.insert_events_sql(names, self._stage(cur, names, EVENTS, rows)))
            inserted = cur.rowcount
        else:
            with self._values_cursor(conn, cur) as (vcur, numbered):
                for chunk, values in self._values(conn, rows, len(EVENTS.names), numbered):
                    vcur.execute(self.insert_events_sql(names, values), chunk)
                    inserted += vcur.rowcount
        return inserted, len(rows) - inserted

    def _values(self, conn: Any, rows: Sequence[Row], width: int, numbered: bool) -> Iterator[tuple[list[Any], str]]:
        """``(flat parameters, VALUES list)`` per statement-sized chunk of ``rows``."""
        for chunk in _chunks(rows, self.rows_per_statement(conn, width)):
            if numbered:
                values = "VALUES " + ", ".join(
                    "(" + ", ".join(f"${r * width + c}" for c in range(1, width + 1)) + ")" for r in range(len(chunk))
                )
            else:
                values = self.values(len(chunk), width)
            yield _flat(chunk), values

    @contextmanager
    def _values_cursor(self, conn: Any, cur: Any) -> Iterator[tuple[Any, bool]]:
        """A cursor taking ``$n`` placeholders as they are (psycopg 3.2+), else ``cur`` with ``%s``."""
        raw_cursor = _psycopg3_attr(conn, "RawCursor")
        if raw_cursor is None:
            yield cur, False
            return
        with raw_cursor(conn) as raw:
            yield raw, True

    def _stage(self, cur: Any, names: TableNames, spec: TableSpec, rows: Sequence[Row]) -> str:
        """``COPY`` rows into a temporary table dropped at commit; return the ``SELECT`` reading it."""
        stage = quote(f"_parcels_stage_{spec.name}")
        cur.execute(f"CREATE TEMP TABLE {stage} (LIKE {names.table(spec)} INCLUDING DEFAULTS) ON COMMIT DROP")
        copy = f"COPY {stage} ({_columns(spec.names)}) FROM STDIN"
        if hasattr(cur, "copy_expert"):  # psycopg2
            cur.copy_expert(copy, _copy_text(rows))
        else:  # psycopg 3: binary, with the column types given up front
            with cur.copy(copy + " (FORMAT BINARY)") as writer:
                writer.set_types([self.copy_types[kind] for _, kind in spec.columns])
                for row in rows:
                    writer.write_row(row)
        # Byte order, as Python sorts the VALUES path: one lock order whatever the database collation.
        order = ", ".join(f'{quote(c)} COLLATE "C"' for c in spec.key)
        return f"SELECT {_columns(spec.names)} FROM pg_temp.{stage} ORDER BY {order}"


_KEY = {spec.name: itemgetter(*range(len(spec.key))) for spec in (PARCELS, EVENTS)}


def _psycopg3_attr(conn: Any, name: str) -> Any:
    if type(conn).__module__.split(".")[0] != "psycopg":
        return None
    import psycopg

    return getattr(psycopg, name, None)


_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_cell(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return text.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE.search(text) else text


def _copy_text(rows: Sequence[Row]) -> io.StringIO:
    """Rows in ``COPY ... FROM STDIN`` text format (for psycopg2's ``copy_expert``)."""
    buffer = io.StringIO()
    buffer.writelines("\t".join(map(_copy_cell, row)) + "\n" for row in rows)
    buffer.seek(0)
    return buffer


class DuckDBDialect(Dialect):
    """
    DuckDB (``airflow-provider-duckdb``), written to its documented SQL but untested here.

    A DuckDB cursor is a second connection with its own transaction, so the connection itself is
    used. No status index: DuckDB turns updates of indexed columns into delete + insert, which
    trips its key checks inside one transaction, and its scans are fast without one.
    """

    name = "duckdb"
    status_index = False
    target_alias = False

    @contextmanager
    def cursor(self, conn: Any) -> Iterator[Any]:
        yield conn

    def begin(self, conn: Any, cur: Any) -> None:
        cur.execute("BEGIN TRANSACTION")


DIALECTS: dict[str, type[Dialect]] = {
    "sqlite": SqliteDialect,
    "postgres": PostgresDialect,
    "postgresql": PostgresDialect,
    "duckdb": DuckDBDialect,
}


def dialect_for(hook: Any) -> Dialect:
    """
    Pick the dialect of a ``DbApiHook``: its ``conn_type``, else its connection's, else ``dialect_name``.

    :raises ValueError: for any other database, naming the supported ones.
    """
    candidates: list[Any] = [getattr(hook, "conn_type", None)]
    for source in (lambda: hook.connection.conn_type, lambda: hook.dialect_name):
        try:
            candidates.append(source())
        except Exception:  # a hook without a stored connection or URI; try the next clue
            continue
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.lower() in DIALECTS:
            return DIALECTS[candidate.lower()]()
    raise ValueError(
        f"{type(hook).__name__} is not a supported warehouse database (found {candidates!r}); "
        "use a sqlite, postgres or duckdb connection"
    )
