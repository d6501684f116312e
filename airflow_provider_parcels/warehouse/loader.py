"""``ParcelWarehouse``: idempotent loads of tracking results into two tables over any ``DbApiHook``."""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_parcels.models import TrackingResult
from airflow_provider_parcels.warehouse import queries
from airflow_provider_parcels.warehouse.dialects import Dialect, TableNames, dialect_for
from airflow_provider_parcels.warehouse.rows import (
    EVENTS,
    PARCELS,
    TABLES,
    StoredIds,
    has_nul,
    replace_nul,
    slice_rows,
    split_rounds,
    versions,
)

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

log = logging.getLogger(__name__)

T = TypeVar("T")
Row = tuple[Any, ...]

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


def validate_identifier(field: str, value: Any, allow_empty: bool = False) -> str:
    """
    Check a table prefix or schema name: ASCII letters, digits and ``_``, not starting with a digit.

    :param field: the argument's name, used in the message.
    :param value: the value handed in.
    :param allow_empty: accept ``""`` (a prefix may be empty).
    :raises ValueError: naming ``field`` for anything else.
    """
    if allow_empty and value == "":
        return value
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{field} must be an identifier of ASCII letters, digits and _ that does not start with a "
            f"digit, at most 41 characters (pattern ^[A-Za-z_][A-Za-z0-9_]{{0,40}}$); got {value!r}"
        )
    return value


@dataclass
class LoadCounts:
    """
    What one or more loads did.

    :param inserted: parcel rows that were new.
    :param updated: parcel rows rewritten: a newer state, or a newer failure recorded beside the state.
    :param unchanged: parcel rows left alone: an older fetch or answer, an older failure, or the same
        fetch loaded again.
    :param events_inserted: event rows that were new.
    :param events_unchanged: event rows already stored.
    """

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    events_inserted: int = 0
    events_unchanged: int = 0

    def __add__(self, other: LoadCounts) -> LoadCounts:
        if not isinstance(other, LoadCounts):
            return NotImplemented
        return LoadCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __radd__(self, other: Any) -> LoadCounts:
        if other == 0:  # lets sum(counts) work
            return self
        return NotImplemented

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class ParcelWarehouse:
    """
    The ``parcel_tracking`` and ``parcel_tracking_events`` tables behind a common-sql connection.

    Tables are created on first use (and columns a later release added, where missing). Each
    :meth:`load` is one transaction: an upsert that never lets an older fetch, a failed fetch or an
    older answer replace a newer good state (a failure is recorded beside it, in ``last_error_*``),
    and an insert of events not stored yet, so repeating or resuming a load leaves the same rows.

    :param conn_id: an Airflow connection whose hook is a ``DbApiHook`` (``sqlite``, ``postgres``,
        ``duckdb``).
    :param table_prefix: put before both table names (``wh_`` gives ``wh_parcel_tracking``); ASCII
        letters, digits and ``_`` only.
    :param schema: the schema holding the tables (PostgreSQL, DuckDB; created if missing); same
        character rule. ``None`` uses the connection's default.
    :param hook: a ready ``DbApiHook`` to use instead of looking ``conn_id`` up.
    :param dialect: ``"merge"`` loads through standard ``MERGE`` (for Snowflake, BigQuery, Redshift
        and other common-sql databases without a dialect here; tested on PostgreSQL 15 and DuckDB);
        ``None`` uses the database's own upsert (SQLite, PostgreSQL, DuckDB).
    """

    #: Batches with at least this many rows (per table) go through ``COPY`` where the dialect has it.
    copy_threshold: int = 1000
    #: Parcels per slice of a load: the rows of at most two slices are held at once.
    slice_size: int = 2000
    #: Times a load is run again after a concurrent writer's conflict (DuckDB; others wait for locks).
    conflict_retries: int = 8

    def __init__(
        self,
        conn_id: str,
        table_prefix: str = "",
        schema: str | None = None,
        hook: DbApiHook | None = None,
        dialect: str | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.table_prefix = validate_identifier("table_prefix", table_prefix, allow_empty=True)
        self.schema = None if schema is None else validate_identifier("schema", schema)
        self.names = TableNames(self.table_prefix, self.schema)
        self._hook = hook
        self.dialect_choice = dialect
        self._dialect: Dialect | None = None
        self._tables_ready = False

    # plumbing -----------------------------------------------------------------------------
    @property
    def hook(self) -> DbApiHook:
        """The connection's ``DbApiHook``, looked up on first use."""
        if self._hook is None:
            from airflow.providers.common.sql.hooks.sql import DbApiHook
            from airflow.sdk import BaseHook

            hook = BaseHook.get_connection(self.conn_id).get_hook()
            if not isinstance(hook, DbApiHook):
                raise TypeError(f"connection {self.conn_id!r} gives a {type(hook).__name__}, not a DbApiHook")
            self._hook = hook
        return self._hook

    @property
    def dialect(self) -> Dialect:
        """The SQL dialect of the connection."""
        if self._dialect is None:
            dialect = dialect_for(self.hook, self.dialect_choice)
            if self.schema and not dialect.supports_schema:
                raise ValueError(f"schema is not supported on {dialect.name}; use table_prefix instead")
            self._dialect = dialect
        return self._dialect

    def table_name(self, table: str) -> str:
        """The quoted, qualified name of ``parcel_tracking`` or ``parcel_tracking_events``."""
        return self.names.table(self._spec(table))

    def _spec(self, table: str) -> Any:
        name = table[len(self.table_prefix) :] if table not in TABLES and table.startswith(self.table_prefix) else table
        if name not in TABLES:
            raise ValueError(f"table must be one of {', '.join(TABLES)}; got {table!r}")
        return TABLES[name]

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A fresh DB-API connection, closed afterwards."""
        conn = self.hook.get_conn()
        try:
            self.dialect.prepare(conn)
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[tuple[Any, Any]]:
        """``(connection, cursor)`` in one transaction: committed on success, rolled back on any error."""
        dialect = self.dialect
        with self.connect() as conn, dialect.cursor(conn) as cur:
            dialect.begin(conn, cur)
            try:
                yield conn, cur
            except BaseException:
                try:
                    dialect.rollback(conn)
                except Exception:  # the original error matters more; the connection is closed next
                    log.warning("rollback failed", exc_info=True)
                raise
            dialect.commit(conn)

    def query(self, conn: Any, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read on ``conn`` and end its read transaction (no lock or snapshot is kept)."""
        with self.dialect.cursor(conn) as cur:
            cur.execute(sql, list(params))
            rows = [tuple(row) for row in cur.fetchall()]
        self.dialect.end_read(conn)
        return rows

    # tables and loads ---------------------------------------------------------------------
    def create_tables(self) -> None:
        """
        Create the schema (if given), both tables and their indexes, if they do not exist, and add
        the columns a table created by an earlier release lacks.
        """

        def create() -> list[str]:
            with self.transaction() as (_, cur):
                for statement in self.dialect.ddl(self.names):
                    cur.execute(statement)
                return self.dialect.add_missing_columns(cur, self.names)

        added = self._retrying(create)
        if added:
            log.info("Added columns to tables of an earlier release: %s", ", ".join(added))
        self._tables_ready = True

    def ensure_tables(self) -> None:
        """:meth:`create_tables` once per instance."""
        if not self._tables_ready:
            self.create_tables()

    def load(self, results: Iterable[TrackingResult]) -> LoadCounts:
        """
        Upsert one chunk of results and their events in one transaction.

        Rows are built and written in slices of :attr:`slice_size` parcels (in key order): the
        memory a load adds stays that of two slices whatever the chunk size. On PostgreSQL the
        next slice's rows are built while the server runs this slice's statements.

        :param results: the chunk; consumed before the transaction starts, so an iterator that
            fails half-way writes nothing.
        :return: the counts of this load.
        """
        dialect = self.dialect
        groups = versions(results)
        if not groups:
            return LoadCounts()
        if len(groups) > self.slice_size:  # one lock order for concurrent loaders (see PostgresDialect)
            groups.sort(key=lambda group: group[0].key)
        slices = [groups[i : i + self.slice_size] for i in range(0, len(groups), self.slice_size)]
        self.ensure_tables()
        try:
            counts = self._write(slices, clean=False)
        except Exception:
            # Checked only after a failure, so the common case pays nothing for it.
            if dialect.text_allows_nul or not any(
                has_nul(rows) for part in slices for rows in self._rows(part)[:2]
            ):
                raise
            log.warning("%s text cannot hold NUL characters: loading them as U+FFFD", dialect.name)
            counts = self._write(slices, clean=True)
        log.info("Loaded %d parcels into %s: %s", len(groups), self.table_name(PARCELS.name), counts.to_dict())
        return counts

    def _rows(
        self, part: list[list[TrackingResult]], clean: bool = False, stored: StoredIds | None = None
    ) -> tuple[list[Row], list[Row], int]:
        """
        The parcel and event rows of one slice (NUL characters replaced when ``clean``), without
        rows for the events in ``stored``; and how many events were left out so.
        """
        parcels, events, skipped = slice_rows(part, self.dialect.ts_param, stored)
        if clean:
            return replace_nul(parcels, None), replace_nul(events, len(EVENTS.key)), skipped
        return parcels, events, skipped

    def _stored(self, conn: Any, cur: Any, part: list[list[TrackingResult]], clean: bool) -> StoredIds:
        """
        The event ids the table holds for the parcels of one slice (read in this transaction); none
        when ``clean`` (keys holding NUL cannot be sent; the insert's rule then skips stored events).
        """
        if clean:
            return {}
        return self.dialect.stored_event_ids(conn, cur, self.names, [group[0].key for group in part])

    def _write(self, slices: list[list[list[TrackingResult]]], clean: bool) -> LoadCounts:
        """
        Build and write the slices in one transaction; where the dialect gains from it
        (``overlap_building``), the next slice is built in a thread while this one is written.

        Before a slice's rows are built, the event ids already stored for its parcels are read (one
        query), and no row is built, sent or probed for those events: a refresh that brings one new
        event per parcel writes that one. The insert's ``ON CONFLICT DO NOTHING`` stays the rule.

        :param slices: parcel groups (each parcel's versions in apply order, see ``versions``).
        :param clean: replace NUL characters (for databases whose text cannot hold them).
        """
        dialect = self.dialect
        bulk = dialect.has_bulk_path

        def write() -> LoadCounts:
            counts = LoadCounts()
            with ExitStack() as stack:
                overlap = dialect.overlap_building and len(slices) > 1
                pool = stack.enter_context(ThreadPoolExecutor(1)) if overlap else None
                pending = None
                conn, cur = stack.enter_context(self.transaction())
                for i, part in enumerate(slices):
                    if pending is not None:
                        parcels, events, skipped = pending.result()
                    else:
                        parcels, events, skipped = self._rows(part, clean, self._stored(conn, cur, part, clean))
                    pending = None
                    if pool and i + 1 < len(slices):
                        # The next slice's parcels: no statement of this loop has written them yet.
                        stored = self._stored(conn, cur, slices[i + 1], clean)
                        pending = pool.submit(self._rows, slices[i + 1], clean, stored)
                    rounds = split_rounds(parcels, len(PARCELS.key))
                    inserted, updated, unchanged = self._upsert_rounds(conn, cur, rounds)
                    events_inserted, events_unchanged = dialect.insert_events(
                        conn,
                        cur,
                        self.names,
                        events,
                        bulk and len(events) >= self.copy_threshold,
                        fresh=inserted == len(rounds[0]),
                    ) if events else (0, 0)
                    counts += LoadCounts(inserted, updated, unchanged, events_inserted, events_unchanged + skipped)
            return counts

        return self._retrying(write)

    def _retrying(self, transaction: Callable[[], T]) -> T:
        """Run ``transaction`` (one whole transaction), again after a concurrent writer's conflict."""
        for attempt in range(self.conflict_retries):
            try:
                return transaction()
            except Exception as exc:
                if not self.dialect.is_write_conflict(exc):
                    raise
                log.info("Concurrent write conflict on %s; running the transaction again (%s)", self.dialect.name, exc)
                time.sleep(random.uniform(0, 0.05 * 2**attempt))
        return transaction()

    def _upsert_rounds(self, conn: Any, cur: Any, rounds: list[list[tuple[Any, ...]]]) -> tuple[int, int, int]:
        """
        Upsert key-distinct rounds of parcel rows in order, so the upsert's rules see a parcel's
        versions one by one; counted once per parcel.

        Parcels with one version (almost always all of them) are counted by the dialect. Those with
        several are compared before and after: inserted if new, updated if their row changed.

        :return: ``(inserted, updated, unchanged)``.
        """
        dialect = self.dialect

        def upsert(rows: list[tuple[Any, ...]]) -> tuple[int, int, int]:
            bulk = dialect.has_bulk_path and len(rows) >= self.copy_threshold
            return dialect.upsert_parcels(conn, cur, self.names, rows, bulk) if rows else (0, 0, 0)

        width = len(PARCELS.key)
        if len(rounds) == 1:
            return upsert(rounds[0])
        repeated = {row[:width] for row in rounds[1]}
        inserted, updated, unchanged = upsert([row for row in rounds[0] if row[:width] not in repeated])
        keys = sorted(repeated)
        before = dialect.fetch_parcels(conn, cur, self.names, keys)
        upsert([row for row in rounds[0] if row[:width] in repeated])
        for later in rounds[1:]:
            upsert(later)
        after = dialect.fetch_parcels(conn, cur, self.names, keys)
        changed = sum(1 for key, row in before.items() if after[key] != row)
        return inserted + len(keys) - len(before), updated + changed, unchanged + len(before) - changed

    # reads --------------------------------------------------------------------------------
    def open_parcels(self, provider: str | None = None, batch_size: int = 10_000) -> Iterator[dict[str, Any]]:
        """
        Stream the parcels not in a terminal status as ``{"carrier", "tracking_number", "client_id"}``.

        :param provider: only this API's parcels.
        :param batch_size: rows per page; memory stays flat however many parcels are open.
        """
        return queries.open_parcels(self, provider, batch_size)

    def late_parcels(
        self,
        now: datetime | None = None,
        max_age: timedelta | None = None,
        provider: str | None = None,
    ) -> list[dict[str, Any]]:
        """
        Parcels to alert on: past their estimated delivery and not delivered, in exception, or
        (with ``max_age``) not terminal although their first event is older than ``max_age``.

        :param now: the reference time (default: now, UTC).
        :param max_age: the longest a parcel may travel; ``None`` skips that rule.
        :param provider: only this API's parcels.
        :return: dicts with ``provider``, ``carrier``, ``tracking_number``, ``client_id``, ``status``,
            ``last_event_at``, ``last_event_description``, ``estimated_delivery``, ``days_late``
            and ``reasons``, the latest first.
        """
        return queries.late_parcels(self, now, max_age, provider)

    def status_counts(self, provider: str | None = None) -> dict[str, int]:
        """
        Parcels per status.

        :param provider: only this API's parcels.
        """
        return queries.status_counts(self, provider)

    def dump(self, table: str) -> list[tuple[Any, ...]]:
        """
        Every row of a table in key order, timestamps as aware UTC ``datetime`` (for tests and checks).

        :param table: ``parcel_tracking`` or ``parcel_tracking_events`` (with or without the prefix).
        """
        return queries.dump(self, self._spec(table))


__all__ = ["LoadCounts", "ParcelWarehouse", "validate_identifier"]
