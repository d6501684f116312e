"""The reads operators and alerting run against the warehouse tables."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_parcels.models import TERMINAL_STATUSES, ParcelStatus
from airflow_provider_parcels.warehouse.dialects import TERMINAL as _TERMINAL
from airflow_provider_parcels.warehouse.dialects import open_predicate, quote
from airflow_provider_parcels.warehouse.rows import EVENTS, INT, PARCELS, TS, TableSpec, utc

if TYPE_CHECKING:
    from airflow_provider_parcels.warehouse.loader import ParcelWarehouse

#: Canonical statuses of parcels still moving (``open_parcels`` reads every one of them in one walk).
OPEN_STATUSES = tuple(s.value for s in ParcelStatus if s not in TERMINAL_STATUSES)


def _cols(names: Any, ref: str = "") -> str:
    return ", ".join(ref + quote(name) for name in names)


def open_parcels_sql(wh: ParcelWarehouse, by_provider: bool, batch_size: int, after: bool) -> str:
    """
    One page of :func:`open_parcels`: parameters ``[provider]`` if ``by_provider``, then, if ``after``,
    the key columns after ``provider`` of the last row of the previous page.
    """
    p = wh.dialect.placeholder
    fixed = ("provider",) if by_provider else ()
    order = tuple(c for c in PARCELS.key if c not in fixed)
    # The predicate word for word as the partial index declares it (SQLite matches it literally).
    where = [open_predicate(), *(f"{quote(c)} = {p}" for c in fixed)]
    if after:
        where.append(f"({_cols(order)}) > ({', '.join([p] * len(order))})")
    return (
        f"SELECT {_cols(PARCELS.key)}, {quote('client_id')} FROM {wh.names.table(PARCELS)} "
        f"WHERE {' AND '.join(where)} ORDER BY {_cols(order)} LIMIT {batch_size}"
    )


def open_parcels(wh: ParcelWarehouse, provider: str | None, batch_size: int) -> Iterator[dict[str, Any]]:
    """
    Stream open parcels page by page: one keyset walk in key order over the partial open index.

    One walk, not one per status: a parcel the caller tracks and loads while iterating keeps its
    key, so whichever open status it moves to, it is behind the walk and is not read again. Each
    page is one short query read to the end, so between pages no lock or snapshot is held and the
    caller may load into the same tables while it iterates.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    wh.ensure_tables()
    order = tuple(c for c in PARCELS.key if provider is None or c != "provider")
    first, following = (open_parcels_sql(wh, provider is not None, batch_size, after) for after in (False, True))
    base: list[Any] = [] if provider is None else [provider]
    after: list[Any] | None = None
    with wh.connect() as conn:
        while True:
            rows = wh.query(conn, first, base) if after is None else wh.query(conn, following, base + after)
            for _, carrier, number, client_id in rows:
                yield {"carrier": carrier, "tracking_number": number, "client_id": client_id}
            if len(rows) < batch_size:
                break
            last = dict(zip(PARCELS.key, rows[-1][:3], strict=True))
            after = [last[c] for c in order]


def late_parcels(
    wh: ParcelWarehouse, now: datetime | None, max_age: timedelta | None, provider: str | None
) -> list[dict[str, Any]]:
    """See :meth:`ParcelWarehouse.late_parcels`."""
    wh.ensure_tables()
    dialect = wh.dialect
    p, ts = dialect.placeholder, dialect.ts_param
    now = utc(now, "now") or datetime.now(timezone.utc)
    events = wh.names.table(EVENTS)
    first_event = (
        f'(SELECT min(e."occurred_at") FROM {events} AS e WHERE e."provider" = t."provider" '
        f'AND e."carrier" = t."carrier" AND e."tracking_number" = t."tracking_number")'
    )
    rules = [f'(t."status" <> {p} AND t."estimated_delivery" < {p})', f't."status" = {p}']
    params: list[Any] = ["delivered", ts(now), "exception"]
    if max_age is not None:
        rules.append(
            f'(t."status" NOT IN ({", ".join([p] * len(_TERMINAL))}) '
            f'AND COALESCE({first_event}, t."last_event_at") < {p})'
        )
        params += [*_TERMINAL, ts(now - max_age)]
    where = " OR ".join(rules)
    if provider is not None:
        where = f'({where}) AND t."provider" = {p}'
        params.append(provider)
    columns = ("provider", "carrier", "tracking_number", "client_id", "status", "last_event_at")
    sql = (
        f'SELECT {_cols(columns, "t.")}, t."last_event_description", t."estimated_delivery", '
        f"{first_event if max_age is not None else 'NULL'} FROM {wh.names.table(PARCELS)} AS t WHERE {where}"
    )
    with wh.connect() as conn:
        rows = wh.query(conn, sql, params)
    late = [_late_row(row, dialect.ts_read, now, max_age) for row in rows]
    late.sort(key=lambda r: (-(r["days_late"] or 0.0), r["provider"], r["carrier"], r["tracking_number"]))
    return late


def _late_row(row: tuple[Any, ...], read: Any, now: datetime, max_age: timedelta | None) -> dict[str, Any]:
    provider, carrier, number, client_id, status, last_at, last_text, eta, first_at = row
    last_at, eta, first_at = read(last_at), read(eta), read(first_at)
    reasons: list[str] = []
    overdue: list[timedelta] = []
    if status == "exception":
        reasons.append("exception")
    if eta is not None and status != "delivered" and eta < now:
        reasons.append("past_estimated_delivery")
        overdue.append(now - eta)
    started = first_at or last_at
    if max_age is not None and status not in _TERMINAL and started is not None and started < now - max_age:
        reasons.append("older_than_max_age")
        overdue.append(now - started - max_age)
    return {
        "provider": provider,
        "carrier": carrier,
        "tracking_number": number,
        "client_id": client_id,
        "status": status,
        "last_event_at": last_at,
        "last_event_description": last_text,
        "estimated_delivery": eta,
        "days_late": round(max(overdue).total_seconds() / 86400, 2) if overdue else None,
        "reasons": reasons,
    }


def status_counts(wh: ParcelWarehouse, provider: str | None) -> dict[str, int]:
    """See :meth:`ParcelWarehouse.status_counts`."""
    wh.ensure_tables()
    sql = f'SELECT "status", count(*) FROM {wh.names.table(PARCELS)}'
    params: list[Any] = []
    if provider is not None:
        sql += f' WHERE "provider" = {wh.dialect.placeholder}'
        params.append(provider)
    with wh.connect() as conn:
        rows = wh.query(conn, sql + ' GROUP BY "status" ORDER BY "status"', params)
    return {status: int(count) for status, count in rows}


def dump(wh: ParcelWarehouse, spec: TableSpec) -> list[tuple[Any, ...]]:
    """See :meth:`ParcelWarehouse.dump`."""
    wh.ensure_tables()
    read = wh.dialect.ts_read
    kinds = [kind for _, kind in spec.columns]
    width = len(spec.key)
    with wh.connect() as conn:
        rows = wh.query(conn, f"SELECT {_cols(spec.names)} FROM {wh.names.table(spec)}")
    # Sorted here, not by ORDER BY: byte order, the same whatever the database's collation.
    rows.sort(key=lambda row: row[:width])
    return [
        tuple(
            read(v) if kind == TS else int(v) if kind == INT and v is not None else v
            for v, kind in zip(row, kinds, strict=True)
        )
        for row in rows
    ]
