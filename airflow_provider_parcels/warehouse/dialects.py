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

from airflow_provider_parcels.models import TERMINAL_STATUSES
from airflow_provider_parcels.warehouse.rows import (
    ADDED_COLUMNS,
    EVENTS,
    INT,
    LAST_ERROR_COLUMNS,
    PARCELS,
    TABLES,
    TEXT,
    TS,
    TableSpec,
)

Row = tuple[Any, ...]

#: The terminal statuses, sorted (written into SQL as literals: they are our own constants).
TERMINAL = sorted(status.value for status in TERMINAL_STATUSES)


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


def upsert_counts(rows: int, existing: int, written: int) -> tuple[int, int, int]:
    """
    ``(inserted, updated, unchanged)`` of an upsert of ``rows`` keys, ``existing`` of them already
    stored before it, that wrote ``written`` rows (inserts and updates).
    """
    inserted = rows - existing
    updated = written - inserted
    return inserted, updated, existing - updated


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

    @property
    def open_index(self) -> str:
        return quote(f"{self.prefix}{PARCELS.name}_open")


def open_predicate() -> str:
    """
    ``"status" NOT IN (<terminal statuses>)``, the one spelling of "open parcel": the partial open
    index is declared with it and ``open_parcels`` filters with it, word for word, so SQLite (which
    matches a partial index's terms literally) and PostgreSQL both use that index.
    """
    return f"{quote('status')} NOT IN ({', '.join(repr(status) for status in TERMINAL)})"


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
    #: Whether a load builds the next slice's rows in a thread while this slice is written: pays
    #: where the writes are long calls that release the GIL (a server's ``INSERT ... SELECT``), not
    #: where the driver takes the GIL back for every row (SQLite's ``executemany``).
    overlap_building: ClassVar[bool] = False
    #: Whether the upsert assigns all columns from one subquery that evaluates the rules once (see
    #: :meth:`upsert_rules`), for engines that do not share common subexpressions (SQLite).
    rules_once: ClassVar[bool] = False

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

    def is_write_conflict(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a concurrent writer's conflict after which the whole load may be retried."""
        return False

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
            # status first for counts and reads by status.
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {names.status_index} ON {names.table(PARCELS)} "
                f"({_columns(('status', *PARCELS.key))})"
            )
            # The open parcels in key order, whatever their status: open_parcels walks it once, so a
            # parcel that moves from one open status to another during the walk is not read again.
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {names.open_index} ON {names.table(PARCELS)} "
                f"({_columns(PARCELS.key)}) WHERE {open_predicate()}"
            )
        return statements

    def add_missing_columns(self, cur: Any, names: TableNames) -> list[str]:
        """
        Add the columns later releases introduced (:data:`ADDED_COLUMNS`) to tables an earlier one
        created, inside the DDL transaction (serialised: SQLite's write lock, PostgreSQL's advisory lock).

        :param cur: a cursor in the DDL transaction.
        :param names: where the tables live.
        :return: the columns added, as ``table.column``.
        """
        added = []
        for table, columns in ADDED_COLUMNS.items():
            spec = TABLES[table]
            cur.execute(f"SELECT * FROM {names.table(spec)} WHERE 1 = 0")
            present = {d[0].lower() for d in cur.description}
            cur.fetchall()
            kinds = dict(spec.columns)
            for column in columns:
                if column not in present:
                    cur.execute(
                        f"ALTER TABLE {names.table(spec)} ADD COLUMN {quote(column)} {self.types[kinds[column]]}"
                    )
                    added.append(f"{spec.name}.{column}")
        return added

    # SQL shared by all dialects -----------------------------------------------------------
    def values(self, rows: int, width: int) -> str:
        one = "(" + ", ".join([self.placeholder] * width) + ")"
        return "VALUES " + ", ".join([one] * rows)

    def upsert_sql(self, names: TableNames, source: str) -> str:
        """
        The parcel upsert from ``source`` (a ``VALUES`` list or a ``SELECT``); the rules live here.

        A stored row ``t`` takes an incoming row ``x`` only when ``x`` was fetched later, or equally
        late and differs (so re-loading the same fetch rewrites nothing and counts as unchanged).
        A *failed fetch* is a row with ``error_code`` set and status ``unknown`` (the request
        failed); a ``not_found`` error row is an answer. ``x`` replaces the state columns (every
        non-key column but ``last_error_*``) when:

        - ``t`` is a failed fetch (the parcel was never answered well): any later fetch does, or
        - ``x`` is not a failed fetch and not an *older answer*: its newest event is not older than
          ``t``'s (:meth:`event_order`), and it does not take a terminal ``t`` back to a
          non-terminal status without a newer event.

        Otherwise, when ``x`` has an error later than the one recorded, its error is recorded beside
        the state in ``last_error_code``, ``last_error_message``, ``last_error_at`` (its
        ``fetched_at``); they are cleared when a later fetch replaces the state, unless the recorded
        error is later than that fetch. The ``last_error_*`` values handed in are not used.
        """
        table = names.table(PARCELS)
        into, ref = (f"{table} AS t", "t") if self.target_alias else (table, names.bare(PARCELS))
        sets, where = self.upsert_rules(ref, "excluded")
        return (
            f"INSERT INTO {into} ({_columns(PARCELS.names)}) {source} "
            f"ON CONFLICT ({_columns(PARCELS.key)}) DO UPDATE SET {sets} WHERE {where}"
        )

    def upsert_rules(self, t: str, x: str) -> tuple[str, str]:
        """
        ``(SET list, condition)`` of the parcel upsert (see :meth:`upsert_sql`), shared by
        ``ON CONFLICT ... DO UPDATE`` and ``MERGE ... WHEN MATCHED``.

        :param t: how the statement names the stored row.
        :param x: how it names the incoming row (``excluded``, or the ``MERGE`` source's alias).
        """

        def col(alias: str, name: str) -> str:
            return f"{alias}.{quote(name)}"

        def failed(alias: str) -> str:
            return f"({col(alias, 'error_code')} IS NOT NULL AND {col(alias, 'status')} = 'unknown')"

        state = [c for c in PARCELS.non_key if c not in LAST_ERROR_COLUMNS]
        fetched = "fetched_at"
        differs = " OR ".join(f"{col(t, c)} {self.distinct} {col(x, c)}" for c in state if c != fetched)
        later_fetch = (
            f"({col(t, fetched)} < {col(x, fetched)} OR ({col(t, fetched)} = {col(x, fetched)} AND ({differs})))"
        )
        terminal = ", ".join(f"'{status}'" for status in TERMINAL)
        replaces = (
            f"({failed(t)} OR (NOT {failed(x)} AND NOT {self.event_order(x, t, '<')} "
            f"AND NOT ({col(t, 'status')} IN ({terminal}) AND {col(x, 'status')} NOT IN ({terminal}) "
            f"AND NOT {self.event_order(x, t, '>')})))"
        )
        # last_error_* <- the error columns of x; only a later error (or another one at the same time).
        error = dict(zip(LAST_ERROR_COLUMNS, ("error_code", "error_message", fetched), strict=True))
        last_at = col(t, "last_error_at")
        later_error = (
            f"({col(x, 'error_code')} IS NOT NULL AND {col(t, fetched)} < {col(x, fetched)} "
            f"AND ({last_at} IS NULL OR {last_at} < {col(x, fetched)} OR ({last_at} = {col(x, fetched)} AND ("
            + " OR ".join(f"{col(t, c)} {self.distinct} {col(x, error[c])}" for c in LAST_ERROR_COLUMNS)
            + "))))"
        )
        where = f"{later_fetch} AND ({replaces} OR {later_error})"
        if self.rules_once and x == "excluded":
            # One row-value assignment from a two-row subquery, so <replaces> is evaluated twice per
            # row rather than once per column (SQLite does not share common subexpressions; the
            # per-column CASEs made a refresh about 4x slower than a plain upsert).
            taken = ", ".join(
                f"CASE WHEN {last_at} > {col(x, fetched)} THEN {col(t, c)} END AS {quote(c)}"
                if c in LAST_ERROR_COLUMNS
                else f"{col(x, c)} AS {quote(c)}"
                for c in PARCELS.non_key
            )
            kept = ", ".join(col(x, error[c]) if c in LAST_ERROR_COLUMNS else col(t, c) for c in PARCELS.non_key)
            sets = (
                f"({_columns(PARCELS.non_key)}) = (SELECT {_columns(PARCELS.non_key)} FROM "
                f"(SELECT 1 AS _r, {taken} UNION ALL SELECT 0, {kept}) "
                f"WHERE _r = (CASE WHEN {replaces} THEN 1 ELSE 0 END))"
            )
            return sets, where
        sets = ", ".join(
            f"{quote(c)} = CASE WHEN NOT {replaces} THEN {col(x, error[c])} "
            f"WHEN {last_at} > {col(x, fetched)} THEN {col(t, c)} END"
            if c in LAST_ERROR_COLUMNS
            else f"{quote(c)} = CASE WHEN {replaces} THEN {col(x, c)} ELSE {col(t, c)} END"
            for c in PARCELS.non_key
        )
        return sets, where

    @staticmethod
    def event_order(x: str, t: str, op: str) -> str:
        """
        Whether ``x``'s newest event is newer (``op`` ``>``) or older (``<``) than ``t``'s.

        By ``last_event_at`` where both are known (the same time is neither); where either is not
        (no event, or the newest has no zone) by ``event_count``: more events is newer. Never null.
        """
        at, count = quote("last_event_at"), quote("event_count")
        return (
            f"(CASE WHEN {x}.{at} IS NOT NULL AND {t}.{at} IS NOT NULL THEN {x}.{at} {op} {t}.{at} "
            f"ELSE {x}.{count} {op} {t}.{count} END)"
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
        return upsert_counts(len(rows), existing, written)

    def insert_events(
        self, conn: Any, cur: Any, names: TableNames, rows: Sequence[Row], bulk: bool, fresh: bool = False
    ) -> tuple[int, int]:
        """
        Insert de-duplicated event rows, leaving events already stored alone.

        :param bulk: the slice is large enough for the dialect's bulk path.
        :param fresh: every parcel of these events was inserted by this transaction (so, barring
            events left without their parcel row, none of them is stored yet).
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

    def fetch_parcels(self, conn: Any, cur: Any, names: TableNames, keys: Sequence[Row]) -> dict[Row, Row]:
        """The stored ``parcel_tracking`` rows of ``keys`` (distinct key tuples), by key."""
        width = len(PARCELS.key)
        found: dict[Row, Row] = {}
        for chunk in _chunks(keys, self.rows_per_statement(conn, width)):
            sql = (
                f"WITH v(p, c, n) AS ({self.values(len(chunk), width)}) "
                f"SELECT {_columns(PARCELS.names, 't.')} FROM v JOIN {names.table(PARCELS)} AS t "
                f'ON t."provider" = v.p AND t."carrier" = v.c AND t."tracking_number" = v.n'
            )
            cur.execute(sql, [value for key in chunk for value in key[:width]])
            found.update((tuple(row[:width]), tuple(row)) for row in cur.fetchall())
        return found

    def stored_event_ids(self, conn: Any, cur: Any, names: TableNames, keys: Sequence[Row]) -> dict[Row, set[str]]:
        """
        The event ids stored for parcel ``keys`` (distinct key tuples), by key: one key-prefix walk
        of the events table's primary key per parcel.
        """
        width = len(PARCELS.key)
        found: dict[Row, set[str]] = {}
        for chunk in _chunks(keys, self.rows_per_statement(conn, width)):
            sql = (
                f"WITH v(p, c, n) AS ({self.values(len(chunk), width)}) "
                f'SELECT e."provider", e."carrier", e."tracking_number", e."event_id" '
                f"FROM v JOIN {names.table(EVENTS)} AS e "
                f'ON e."provider" = v.p AND e."carrier" = v.c AND e."tracking_number" = v.n'
            )
            cur.execute(sql, [value for key in chunk for value in key[:width]])
            for provider, carrier, number, event_id in cur.fetchall():
                found.setdefault((provider, carrier, number), set()).add(event_id)
        return found

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
    rules_once = True
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

    def upsert_parcels(
        self, conn: Any, cur: Any, names: TableNames, rows: Sequence[Row], bulk: bool
    ) -> tuple[int, int, int]:
        # One prepared single-row upsert run by executemany (the loop over rows is sqlite3's, in C);
        # the keys already stored are counted first by one query, the rows written by total_changes.
        existing = self.count_existing(conn, cur, names, rows)
        before = conn.total_changes
        cur.executemany(self.upsert_sql(names, self.values(1, len(PARCELS.names))), rows)
        return upsert_counts(len(rows), existing, conn.total_changes - before)


    def stored_event_ids(self, conn: Any, cur: Any, names: TableNames, keys: Sequence[Row]) -> dict[Row, set[str]]:
        # One row per parcel: its ids joined in SQL (event ids are hex, never holding a comma), so
        # Python makes one string per parcel rather than a four-string tuple per event.
        width = len(PARCELS.key)
        found: dict[Row, set[str]] = {}
        for chunk in _chunks(keys, self.rows_per_statement(conn, width + 1)):
            one = "(" + ", ".join([self.placeholder] * (width + 1)) + ")"
            sql = (
                f"WITH v(i, p, c, n) AS (VALUES {', '.join([one] * len(chunk))}) "
                f'SELECT v.i, group_concat(e."event_id") FROM v JOIN {names.table(EVENTS)} AS e '
                f'ON e."provider" = v.p AND e."carrier" = v.c AND e."tracking_number" = v.n GROUP BY v.i'
            )
            cur.execute(sql, [value for i, key in enumerate(chunk) for value in (i, *key[:width])])
            found.update((tuple(chunk[i][:width]), set(ids.split(","))) for i, ids in cur.fetchall())
        return found


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
    overlap_building = True
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

    def insert_events(
        self, conn: Any, cur: Any, names: TableNames, rows: Sequence[Row], bulk: bool, fresh: bool = False
    ) -> tuple[int, int]:
        inserted = 0
        rows = rows if bulk else sorted(rows, key=_KEY[EVENTS.name])
        if bulk and fresh and self._copy_new(cur, names, rows):
            return len(rows), 0
        if bulk:
            cur.execute(self.insert_events_sql(names, self._stage(cur, names, EVENTS, rows)))
            inserted = cur.rowcount
        else:
            with self._values_cursor(conn, cur) as (vcur, numbered):
                for chunk, values in self._values(conn, rows, len(EVENTS.names), numbered):
                    vcur.execute(self.insert_events_sql(names, values), chunk)
                    inserted += vcur.rowcount
        return inserted, len(rows) - inserted

    def stored_event_ids(self, conn: Any, cur: Any, names: TableNames, keys: Sequence[Row]) -> dict[Row, set[str]]:
        # Three array parameters whatever the number of keys (a long %s list is parsed in Python).
        found: dict[Row, set[str]] = {}
        if not keys:
            return found
        providers, carriers, numbers = (list(column) for column in zip(*(key[:3] for key in keys), strict=True))
        cur.execute(
            'SELECT e."provider", e."carrier", e."tracking_number", e."event_id" '
            "FROM unnest(%s::text[], %s::text[], %s::text[]) AS v(p, c, n) "
            f"JOIN {names.table(EVENTS)} AS e "
            'ON e."provider" = v.p AND e."carrier" = v.c AND e."tracking_number" = v.n',
            [providers, carriers, numbers],
        )
        for provider, carrier, number, event_id in cur.fetchall():
            found.setdefault((provider, carrier, number), set()).add(event_id)
        return found

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

    def _copy_new(self, cur: Any, names: TableNames, rows: Sequence[Row]) -> bool:
        """
        ``COPY`` the events of parcels this transaction inserted straight into the events table
        (a backfill's common case: no stage table, no ``INSERT ... SELECT``), under a savepoint;
        ``False``, rolled back to it, when an event was stored after all (a duplicate key).
        """
        cur.execute("SAVEPOINT parcels_copy_new")
        try:
            self._copy(cur, names.table(EVENTS), EVENTS, rows)
        except Exception as exc:
            if (getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)) != "23505":
                raise
            cur.execute("ROLLBACK TO SAVEPOINT parcels_copy_new")
            return False
        cur.execute("RELEASE SAVEPOINT parcels_copy_new")
        return True

    def _copy(self, cur: Any, table: str, spec: TableSpec, rows: Sequence[Row]) -> None:
        """``COPY`` rows into ``table``: binary with psycopg 3 (column types given up front), text with psycopg2."""
        copy = f"COPY {table} ({_columns(spec.names)}) FROM STDIN"
        if hasattr(cur, "copy_expert"):  # psycopg2
            cur.copy_expert(copy, _copy_text(rows))
        else:  # psycopg 3: binary, with the column types given up front
            with cur.copy(copy + " (FORMAT BINARY)") as writer:
                writer.set_types([self.copy_types[kind] for _, kind in spec.columns])
                for row in rows:
                    writer.write_row(row)

    def _stage(self, cur: Any, names: TableNames, spec: TableSpec, rows: Sequence[Row]) -> str:
        """``COPY`` rows into a temporary table dropped at commit; return the ``SELECT`` reading it."""
        stage = quote(f"_parcels_stage_{spec.name}")
        # A load may stage a table more than once (a batch holding several versions of a parcel).
        cur.execute(f"DROP TABLE IF EXISTS pg_temp.{stage}")
        cur.execute(f"CREATE TEMP TABLE {stage} (LIKE {names.table(spec)} INCLUDING DEFAULTS) ON COMMIT DROP")
        self._copy(cur, f"pg_temp.{stage}", spec, rows)
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
    DuckDB (``apache-airflow-providers-duckdb``, extra ``duckdb``): ``INSERT ... ON CONFLICT`` from
    a pandas frame (see :meth:`stage_select`), one statement per table and slice (``executemany``
    runs one statement per row, about 100x slower).

    A DuckDB cursor is a second connection with its own transaction, so the connection itself is
    used. No status index: DuckDB turns updates of indexed columns into delete + insert, which
    trips its key checks inside one transaction, and its scans are fast without one.
    """

    name = "duckdb"
    status_index = False
    target_alias = False
    has_bulk_path = True

    @contextmanager
    def cursor(self, conn: Any) -> Iterator[Any]:
        yield conn

    def begin(self, conn: Any, cur: Any) -> None:
        cur.execute("BEGIN TRANSACTION")

    def is_write_conflict(self, exc: BaseException) -> bool:
        # Optimistic concurrency: of two transactions writing the same rows, the later to commit
        # fails (instead of waiting for a lock); the load is one transaction, so it can run again.
        # An upsert meets a duplicate key only when another transaction inserted it uncommitted.
        # Also: a connection that opens a database file in the same moment as another one in this
        # process may not see the frame scan that DuckDB registers when it opens the file (its
        # catalog is transactional); a new transaction does.
        kind = type(exc)
        return kind.__module__.startswith("_duckdb") and (
            kind.__name__ == "TransactionException"
            or (kind.__name__ == "ConstraintException" and "Duplicate key" in str(exc))
            or (kind.__name__ == "CatalogException" and "pandas_scan" in str(exc))
        )

    def prepare(self, conn: Any) -> None:
        # The stage below is read through a replacement scan (a frame found by its variable name).
        conn.execute("SET python_enable_replacements = true")

    @staticmethod
    def stage_frame(spec: TableSpec, rows: Sequence[Row]) -> Any:
        """
        ``rows`` as a pandas frame of ``object`` columns, so pandas converts no value (no
        nanosecond timestamps, whose range ends in 2262); :meth:`stage_select` casts each column.
        """
        import pandas as pd

        columns = zip(spec.names, zip(*rows, strict=True), strict=True)
        return pd.DataFrame({name: pd.Series(column, dtype=object) for name, column in columns})

    def stage_select(self, spec: TableSpec) -> str:
        """
        ``SELECT`` of the frame held in the calling function's local ``_parcels_stage``: DuckDB
        scans its columns in C (4x faster than ``UNNEST`` of list parameters), and, unlike a frame
        passed to ``register``, holds it only while the statement runs (a registered frame is kept
        until the transaction ends, so a load's memory would grow with its chunk).
        """
        casts = ", ".join(f"CAST({quote(name)} AS {self.types[kind]}) AS {quote(name)}" for name, kind in spec.columns)
        return f"SELECT {casts} FROM _parcels_stage"

    def stored_event_ids(self, conn: Any, cur: Any, names: TableNames, keys: Sequence[Row]) -> dict[Row, set[str]]:
        # The keys as a frame, and one list of event ids per parcel: no row per stored event.
        if not keys:
            return {}
        key_spec = TableSpec("keys", PARCELS.columns[: len(PARCELS.key)], PARCELS.key)
        _parcels_stage = self.stage_frame(key_spec, keys)  # read by its name in the SQL
        on = " AND ".join(f"e.{quote(c)} = v.{quote(c)}" for c in PARCELS.key)
        found = conn.execute(
            f"SELECT {_columns(PARCELS.key, 'v.')}, list(e.\"event_id\") "
            f"FROM ({self.stage_select(key_spec)}) AS v JOIN {names.table(EVENTS)} AS e ON {on} GROUP BY ALL"
        ).fetchall()
        return {(provider, carrier, number): set(ids) for provider, carrier, number, ids in found}

    def upsert_parcels(
        self, conn: Any, cur: Any, names: TableNames, rows: Sequence[Row], bulk: bool
    ) -> tuple[int, int, int]:
        _parcels_stage = self.stage_frame(PARCELS, rows)  # read by its name in the SQL
        source = self.stage_select(PARCELS)
        on = " AND ".join(f"t.{quote(c)} = s.{quote(c)}" for c in PARCELS.key)
        count = f"SELECT count(*) FROM ({source}) AS s JOIN {names.table(PARCELS)} AS t ON {on}"
        existing = conn.execute(count).fetchone()[0]
        written = len(conn.execute(self.upsert_sql(names, source) + " RETURNING 1").fetchall())
        return upsert_counts(len(rows), existing, written)

    def insert_events(
        self, conn: Any, cur: Any, names: TableNames, rows: Sequence[Row], bulk: bool, fresh: bool = False
    ) -> tuple[int, int]:
        if not rows:
            return 0, 0
        _parcels_stage = self.stage_frame(EVENTS, rows)  # read by its name in the SQL
        inserted = conn.execute(self.insert_events_sql(names, self.stage_select(EVENTS))).fetchone()[0]
        return inserted, len(rows) - inserted


class MergeWrites:
    """
    Writes through standard ``MERGE`` (SQL:2003; Snowflake, BigQuery, Redshift, SQL Server, Oracle,
    Databricks, PostgreSQL 15+, DuckDB 1.4+) from a typed multi-row ``VALUES`` list, with the same
    rules as the ``ON CONFLICT`` upsert (:meth:`Dialect.upsert_rules`). Mixed into a dialect: the
    connection and transaction handling stay that dialect's.
    """

    merge = True

    def is_write_conflict(self, exc: BaseException) -> bool:
        """
        Also a duplicate key: two ``MERGE`` statements that both found a parcel missing both insert
        it (``MERGE`` takes no lock on a row that does not exist yet, PostgreSQL 15 included); the
        source rows are key-distinct, so only a concurrent loader causes it, and a retry matches.
        """
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        names = {kind.__name__ for kind in type(exc).__mro__}
        text = str(exc).lower()
        duplicate = code == "23505" or bool(names & {"IntegrityError", "UniqueViolation"}) or "duplicate key" in text
        return duplicate or super().is_write_conflict(exc)  # type: ignore[misc]

    def merge_source(self, spec: TableSpec, rows: int) -> str:
        """``SELECT CAST(...) ... FROM (VALUES ...)``: typed, so all-NULL columns compare as their type."""
        dialect: Any = self
        width = len(spec.columns)
        casts = ", ".join(
            f"CAST(v.c{i} AS {dialect.types[kind]}) AS {quote(name)}" for i, (name, kind) in enumerate(spec.columns)
        )
        aliases = ", ".join(f"c{i}" for i in range(width))
        return f"SELECT {casts} FROM ({dialect.values(rows, width)}) AS v({aliases})"

    def merge_sql(self, names: TableNames, spec: TableSpec, rows: int) -> str:
        """The ``MERGE`` of ``rows`` incoming rows: the upsert's rules for parcels, insert-if-new for events."""
        dialect: Any = self
        on = " AND ".join(f"t.{quote(c)} = x.{quote(c)}" for c in spec.key)
        insert = f"WHEN NOT MATCHED THEN INSERT ({_columns(spec.names)}) VALUES ({_columns(spec.names, 'x.')})"
        matched = ""
        if spec is PARCELS:
            sets, where = dialect.upsert_rules("t", "x")
            matched = f"WHEN MATCHED AND {where} THEN UPDATE SET {sets} "
        source = self.merge_source(spec, rows)
        return f"MERGE INTO {names.table(spec)} AS t USING ({source}) AS x ON {on} {matched}{insert}"

    def _merge(self, conn: Any, cur: Any, names: TableNames, spec: TableSpec, rows: Sequence[Row]) -> int:
        dialect: Any = self
        statements: dict[int, str] = {}
        written = 0
        for chunk in _chunks(rows, dialect.rows_per_statement(conn, len(spec.columns))):
            sql = statements.get(len(chunk))
            if sql is None:
                sql = statements[len(chunk)] = self.merge_sql(names, spec, len(chunk))
            result = cur.execute(sql, _flat(chunk))
            count = getattr(cur, "rowcount", -1)
            if count is None or count < 0:  # DuckDB reports the count as a result row
                count = (result if result is not None else cur).fetchone()[0]
            written += count
        return written

    def upsert_parcels(
        self, conn: Any, cur: Any, names: TableNames, rows: Sequence[Row], bulk: bool
    ) -> tuple[int, int, int]:
        dialect: Any = self
        existing = dialect.count_existing(conn, cur, names, rows)
        written = self._merge(conn, cur, names, PARCELS, rows)
        return upsert_counts(len(rows), existing, written)

    def insert_events(
        self, conn: Any, cur: Any, names: TableNames, rows: Sequence[Row], bulk: bool, fresh: bool = False
    ) -> tuple[int, int]:
        inserted = self._merge(conn, cur, names, EVENTS, rows)
        return inserted, len(rows) - inserted


class MergeDialect(MergeWrites, Dialect):
    """
    Any other common-sql ``DbApiHook`` database with standard ``MERGE`` (opt-in:
    ``ParcelWarehouse(..., dialect="merge")``), with DB-API transactions, the hook's
    placeholder, and no secondary index (``CREATE INDEX`` is not portable). Tested on PostgreSQL 15
    and DuckDB; elsewhere the same SQL, untested.

    :param placeholder: the hook's parameter marker (``DbApiHook.placeholder``).
    """

    name = "merge"
    status_index = False
    has_bulk_path = False

    def __init__(self, placeholder: str = "%s") -> None:
        self.placeholder = placeholder  # type: ignore[misc]


class PostgresMergeDialect(MergeWrites, PostgresDialect):
    """PostgreSQL 15+ loaded through ``MERGE`` (the generic path, on the database the tests run)."""

    has_bulk_path = False


class DuckDBMergeDialect(MergeWrites, DuckDBDialect):
    """DuckDB loaded through ``MERGE`` (the generic path)."""

    has_bulk_path = False


DIALECTS: dict[str, type[Dialect]] = {
    "sqlite": SqliteDialect,
    "postgres": PostgresDialect,
    "postgresql": PostgresDialect,
    "duckdb": DuckDBDialect,
}

#: ``dialect="merge"``: the database's own connection handling, with ``MERGE`` writes.
MERGE_DIALECTS: dict[str, type[Dialect]] = {
    "postgres": PostgresMergeDialect,
    "postgresql": PostgresMergeDialect,
    "duckdb": DuckDBMergeDialect,
}

def dialect_for(hook: Any, choice: str | None = None) -> Dialect:
    """
    Pick the dialect of a ``DbApiHook``: its ``conn_type``, else its connection's, else ``dialect_name``.

    :param hook: the connection's hook.
    :param choice: ``"merge"`` for the generic ``MERGE`` path; ``None`` for the database's own upsert.
    :raises ValueError: for a database without a dialect of its own when ``merge`` is not chosen.
    """
    candidates: list[Any] = [getattr(hook, "conn_type", None)]
    for source in (lambda: hook.connection.conn_type, lambda: hook.dialect_name):
        try:
            candidates.append(source())
        except Exception:  # a hook without a stored connection or URI; try the next clue
            continue
    if choice not in (None, "", "native", "merge"):
        raise ValueError(f"dialect must be 'merge' or None (the database's own upsert); got {choice!r}")
    known = [c.lower() for c in candidates if isinstance(c, str)]
    if choice == "merge":
        for candidate in known:
            if candidate in MERGE_DIALECTS:
                return MERGE_DIALECTS[candidate]()
        return MergeDialect(getattr(hook, "placeholder", None) or "%s")
    for candidate in known:
        if candidate in DIALECTS:
            return DIALECTS[candidate]()
    raise ValueError(
        f"{type(hook).__name__} is not a supported warehouse database (found {candidates!r}); use a sqlite, "
        "postgres or duckdb connection, or ParcelWarehouse(..., dialect='merge') for another database with "
        "standard MERGE"
    )
