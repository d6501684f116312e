"""
Where the ledger lives: one record per API key, changed atomically with the store's clock.

* :class:`SQLiteStore`: a file (the embedded default ``$AIRFLOW_HOME/parcels_quota.db``, or a
  ``sqlite`` connection's file); WAL, ``BEGIN IMMEDIATE``, a short busy timeout. One machine.
* :class:`PostgresStore`: a ``postgres`` connection; ``SELECT ... FOR UPDATE`` and
  ``clock_timestamp()``. Several machines.
* :class:`RedisStore`: a ``redis`` connection (``RedisHook``); one Lua script per step with
  Redis ``TIME``. Several machines.
* :class:`MemoryStore`: this process only: the fallback while a shared store is unreachable.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar

from airflow_provider_parcels.quota.state import (
    STATE_FIELDS,
    LedgerState,
    Lower,
    Op,
    Pause,
    Peek,
    Reserve,
    StepResult,
    step,
    wall_clock,
)

DEFAULT_FILE_NAME = "parcels_quota.db"
TABLE = "parcels_quota_ledger"
#: Seconds a SQLite writer waits for another one before the store counts as unreachable.
SQLITE_BUSY_TIMEOUT = 2.0
#: Seconds a Redis call may take.
REDIS_TIMEOUT = 2.0
#: A Redis record unused this long expires (longer than a month: the month's count must survive).
REDIS_TTL_SECONDS = 40 * 86_400
REDIS_PREFIX = "parcels:quota:"


class QuotaStoreError(RuntimeError):
    """The store could not be reached or refused the step (the ledger falls back to this process)."""


class QuotaStore(ABC):
    """
    A place that keeps the records of API keys and runs :func:`~.state.step` atomically.

    :param name: what ``status`` and warnings call it (never a secret).
    """

    #: Kind of store: ``sqlite``, ``postgres``, ``redis`` or ``memory``.
    kind: ClassVar[str]

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def apply(self, key: str, op: Op, *, now: float | None = None) -> StepResult:
        """
        Run ``op`` on the record of ``key`` atomically.

        :param key: the ledger key (API name and credential hash).
        :param op: the step.
        :param now: a clock to use instead of the store's (tests only).
        :raises QuotaStoreError: the store is unreachable or failed.
        """

    @abstractmethod
    def list_keys(self) -> list[str]:
        """Every ledger key in the store."""

    def close(self) -> None:  # noqa: B027 - a store holding no connection has nothing to close
        """Close connections (a later call opens them again)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class MemoryStore(QuotaStore):
    """
    Records in this process's memory, behind a lock: the fallback while a shared store is down.

    :param name: a label.
    """

    kind = "memory"

    def __init__(self, name: str = "this process") -> None:
        super().__init__(name)
        self._lock = threading.Lock()
        self._records: dict[str, LedgerState] = {}

    def apply(self, key: str, op: Op, *, now: float | None = None) -> StepResult:
        with self._lock:
            result = step(self._records.get(key, LedgerState()), op, wall_clock() if now is None else now)
            if not isinstance(op, Peek):
                self._records[key] = result.state
            return result

    def list_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._records)


class _PerProcessConnection:
    """One DB-API connection per process (never inherited across ``fork``), used under a lock."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._pid = 0
        self.lock = threading.Lock()

    def get(self) -> Any:
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._connect()
            self._pid = os.getpid()
        return self._conn

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with suppress(Exception):
                conn.close()


def _row_to_state(row: tuple[Any, ...] | None) -> LedgerState:
    if row is None:
        return LedgerState()
    values = zip(STATE_FIELDS, row, strict=True)
    return LedgerState(**{name: (float(v) if v is not None else None) for name, v in values})


def _state_values(state: LedgerState) -> list[float | None]:
    return [getattr(state, name) for name in STATE_FIELDS]


#: Environment variable naming another file for the embedded ledger (tests give each test its own).
QUOTA_DB_ENV = "PARCELS_QUOTA_DB"


def default_sqlite_path() -> Path:
    """
    ``$AIRFLOW_HOME/parcels_quota.db`` (``~/airflow`` when ``AIRFLOW_HOME`` is unset), or the
    file ``$PARCELS_QUOTA_DB`` names.
    """
    if os.environ.get(QUOTA_DB_ENV):
        return Path(os.environ[QUOTA_DB_ENV])
    home = os.environ.get("AIRFLOW_HOME")
    if not home:
        try:
            from airflow.configuration import AIRFLOW_HOME as home  # type: ignore[no-redef]
        except Exception:
            home = os.path.join(os.path.expanduser("~"), "airflow")
    return Path(home) / DEFAULT_FILE_NAME


class SQLiteStore(QuotaStore):
    """
    A SQLite file shared by every process of one machine (WAL, ``BEGIN IMMEDIATE``).

    The clock is this machine's: every process using the file runs on it. A file on a network
    share is not supported (SQLite's locking is not reliable there): use PostgreSQL or Redis.

    :param path: the file; its directory is created.
    :param busy_timeout: seconds to wait for another writer before failing.
    """

    kind = "sqlite"

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float = SQLITE_BUSY_TIMEOUT) -> None:
        self.path = Path(path).expanduser()
        super().__init__(f"sqlite:{self.path}")
        self.busy_timeout = busy_timeout
        self._conn = _PerProcessConnection(self._connect)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout, isolation_level=None,
                               check_same_thread=False)
        columns = ", ".join(f"{name} REAL" + ("" if name.endswith(("_cap", "_limit")) or name == "rpm"
                                               else " NOT NULL DEFAULT 0") for name in STATE_FIELDS)
        # Processes opening a new file at once: switching to WAL and creating the table can meet
        # "database is locked" at once, without the busy timeout (SQLite refuses a lock upgrade
        # that could deadlock). Retried within the busy timeout, so no process falls back for it.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (key TEXT PRIMARY KEY, {columns})")
                conn.execute("COMMIT")
                return conn
            except sqlite3.OperationalError:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if time.monotonic() >= deadline:
                    conn.close()
                    raise
                time.sleep(random.uniform(0.005, 0.03))

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._conn.lock:
            try:
                yield self._conn.get()
            except (sqlite3.Error, OSError) as exc:  # locked past the busy timeout, unwritable, disk full
                self._conn.drop()
                raise QuotaStoreError(f"quota store {self.name}: {type(exc).__name__}: {exc}") from exc

    def apply(self, key: str, op: Op, *, now: float | None = None) -> StepResult:
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(f"SELECT {', '.join(STATE_FIELDS)} FROM {TABLE} WHERE key = ?", (key,)).fetchone()
                result = step(_row_to_state(row), op, wall_clock() if now is None else now)
                if not isinstance(op, Peek):
                    conn.execute(
                        f"INSERT OR REPLACE INTO {TABLE} (key, {', '.join(STATE_FIELDS)}) "
                        f"VALUES (?, {', '.join('?' * len(STATE_FIELDS))})",
                        [key, *_state_values(result.state)],
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

    def list_keys(self) -> list[str]:
        with self._connection() as conn:
            return [r[0] for r in conn.execute(f"SELECT key FROM {TABLE} ORDER BY key")]

    def close(self) -> None:
        with self._conn.lock:
            self._conn.drop()


class PostgresStore(QuotaStore):
    """
    A table in PostgreSQL shared by every machine: the row is locked (``FOR UPDATE``) for the
    step, and the clock is the server's ``clock_timestamp()``, read once the lock is held.

    :param connect: returns a new DB-API connection (psycopg 2 or 3), e.g. ``PostgresHook.get_conn``.
    :param name: a label (the connection id).
    """

    kind = "postgres"

    def __init__(self, connect: Callable[[], Any], name: str) -> None:
        super().__init__(f"postgres:{name}")
        self._factory = connect
        self._conn = _PerProcessConnection(self._connect)

    def _connect(self) -> Any:
        conn = self._factory()
        columns = ", ".join(
            f"{name} DOUBLE PRECISION"
            + ("" if name.endswith(("_cap", "_limit")) or name == "rpm" else " NOT NULL DEFAULT 0")
            for name in STATE_FIELDS
        )
        with conn.cursor() as cur:
            try:
                cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (key TEXT PRIMARY KEY, {columns})")
                conn.commit()
            except Exception:  # two processes creating it at once: the other one won
                conn.rollback()
                cur.execute(f"SELECT 1 FROM {TABLE} LIMIT 1")
                conn.rollback()
        return conn

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        with self._conn.lock:
            try:
                yield self._conn.get()
            except QuotaStoreError:
                raise
            except Exception as exc:
                self._conn.drop()
                raise QuotaStoreError(f"quota store {self.name}: {type(exc).__name__}: {exc}") from exc

    def apply(self, key: str, op: Op, *, now: float | None = None) -> StepResult:
        select = f"SELECT {', '.join(STATE_FIELDS)} FROM {TABLE} WHERE key = %s"
        with self._connection() as conn:
            try:
                with conn.cursor() as cur:
                    if isinstance(op, Peek):
                        cur.execute(select, (key,))
                    else:
                        cur.execute(select + " FOR UPDATE", (key,))
                    row = cur.fetchone()
                    if row is None and not isinstance(op, Peek):
                        cur.execute(f"INSERT INTO {TABLE} (key) VALUES (%s) ON CONFLICT (key) DO NOTHING", (key,))
                        cur.execute(select + " FOR UPDATE", (key,))
                        row = cur.fetchone()
                    cur.execute("SELECT extract(epoch FROM clock_timestamp())::double precision")
                    store_now = float(cur.fetchone()[0])
                    result = step(_row_to_state(row), op, store_now if now is None else now)
                    if not isinstance(op, Peek):
                        cur.execute(
                            f"UPDATE {TABLE} SET {', '.join(f'{n} = %s' for n in STATE_FIELDS)} WHERE key = %s",
                            [*_state_values(result.state), key],
                        )
                conn.commit()
            except BaseException:
                with suppress(Exception):
                    conn.rollback()
                raise
            return result

    def list_keys(self) -> list[str]:
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT key FROM {TABLE} ORDER BY key")
            keys = [r[0] for r in cur.fetchall()]
            conn.rollback()
            return keys

    def close(self) -> None:
        with self._conn.lock:
            self._conn.drop()


#: The step of :func:`~.state.step` for Redis: the same rules, on a hash, with Redis ``TIME``.
#: KEYS[1] the record; ARGV: op, now override ('' = TIME), ttl, then the op's arguments.
LUA_STEP = r"""
local key = KEYS[1]
local op = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local ttl = tonumber(ARGV[3])
local names = {'tat', 'paused_until', 'day_end', 'day_used', 'day_cap', 'month_end', 'month_used',
               'month_cap', 'rpm', 'day_limit', 'month_limit', 'updated_at'}
local nullable = {day_cap = true, month_cap = true, rpm = true, day_limit = true, month_limit = true}
local raw = redis.call('HMGET', key, unpack(names))
local s = {}
for i, name in ipairs(names) do
  local v = raw[i]
  if v and v ~= '' then s[name] = tonumber(v) elseif not nullable[name] then s[name] = 0 end
end
local function opt(v) if v == nil or v == '' then return nil end return tonumber(v) end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m > 2) and (m - 3) or (m + 9)
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
local function month_end(t)
  local z = math.floor(t / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = (mp < 10) and (mp + 3) or (mp - 9)
  if m <= 2 then y = y + 1 end
  m = m + 1
  if m > 12 then m = 1; y = y + 1 end
  return days_from_civil(y, m, 1) * 86400
end
local function limit(period)
  local a, b = s[period .. '_limit'], s[period .. '_cap']
  if a == nil then return b end
  if b == nil then return a end
  return math.min(a, b)
end

if now >= s.day_end then s.day_used = 0; s.day_cap = nil; s.day_end = (math.floor(now / 86400) + 1) * 86400 end
if now >= s.month_end then s.month_used = 0; s.month_cap = nil; s.month_end = month_end(now) end

local wait, exhausted = 0, ''
if op == 'reserve' then
  local cost, interval = tonumber(ARGV[4]), tonumber(ARGV[5])
  s.rpm = opt(ARGV[6]); s.day_limit = opt(ARGV[7]); s.month_limit = opt(ARGV[8])
  for _, period in ipairs({'month', 'day'}) do
    local l = limit(period)
    if l ~= nil and s[period .. '_used'] + cost > l then exhausted = period; break end
  end
  if exhausted == '' then
    local start = math.max(now, s.tat, s.paused_until)
    s.tat = start + cost * interval
    s.day_used = s.day_used + cost
    s.month_used = s.month_used + cost
    wait = start - now
  end
elseif op == 'pause' then
  s.paused_until = math.max(s.paused_until, now + math.max(0, tonumber(ARGV[4])))
elseif op == 'lower' then
  local period, remaining, reset_in = ARGV[4], tonumber(ARGV[5]), opt(ARGV[6])
  if period == 'minute' then
    if remaining <= 0 and reset_in ~= nil then
      s.paused_until = math.max(s.paused_until, now + math.max(0, reset_in))
    end
  else
    if reset_in ~= nil and reset_in > 0 then s[period .. '_end'] = now + reset_in end
    local cap = s[period .. '_used'] + math.max(0, remaining)
    local old = s[period .. '_cap']
    if old == nil or cap < old then s[period .. '_cap'] = cap end
  end
end

local out = {}
if op ~= 'peek' then
  s.updated_at = now
  local args = {}
  for _, name in ipairs(names) do
    local v = s[name]
    args[#args + 1] = name
    if v == nil then args[#args + 1] = '' else args[#args + 1] = string.format('%.6f', v) end
  end
  redis.call('HSET', key, unpack(args))
  redis.call('EXPIRE', key, ttl)
end
out[1] = string.format('%.6f', now)
out[2] = string.format('%.6f', wait)
out[3] = exhausted
for i, name in ipairs(names) do
  local v = s[name]
  if v == nil then out[3 + i] = '' else out[3 + i] = string.format('%.6f', v) end
end
return out
"""


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(float(value))


class RedisStore(QuotaStore):
    """
    A Redis hash per key, changed by one Lua script (atomic on the server) with Redis ``TIME``.

    :param client: a ``redis.Redis`` (``RedisHook(conn_id).get_conn()``).
    :param name: a label (the connection id).
    """

    kind = "redis"

    def __init__(self, client: Any, name: str) -> None:
        super().__init__(f"redis:{name}")
        self._client = client
        self._script = client.register_script(LUA_STEP)

    def apply(self, key: str, op: Op, *, now: float | None = None) -> StepResult:
        if isinstance(op, Reserve):
            args = ["reserve", op.cost, op.interval, _fmt(op.rpm), _fmt(op.day_limit), _fmt(op.month_limit)]
        elif isinstance(op, Pause):
            args = ["pause", op.seconds]
        elif isinstance(op, Lower):
            args = ["lower", op.period, op.remaining, _fmt(op.reset_in)]
        else:
            args = ["peek"]
        rest = [a if isinstance(a, str) else repr(float(a)) for a in args[1:]]
        argv = [args[0], _fmt(now), REDIS_TTL_SECONDS, *rest]
        try:
            out = self._script(keys=[REDIS_PREFIX + key], args=argv)
        except Exception as exc:
            raise QuotaStoreError(f"quota store {self.name}: {type(exc).__name__}: {exc}") from exc
        out = [v.decode() if isinstance(v, bytes) else str(v) for v in out]
        state = LedgerState(**{n: (float(v) if v != "" else None) for n, v in zip(STATE_FIELDS, out[3:], strict=False)})
        return StepResult(now=float(out[0]), wait=float(out[1]), exhausted=out[2] or None, state=state)

    def list_keys(self) -> list[str]:
        try:
            found = self._client.scan_iter(match=REDIS_PREFIX + "*", count=500)
            return sorted((k.decode() if isinstance(k, bytes) else k)[len(REDIS_PREFIX):] for k in found)
        except Exception as exc:
            raise QuotaStoreError(f"quota store {self.name}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with suppress(Exception):
            self._client.close()


_stores: dict[str, QuotaStore] = {}
_stores_lock = threading.Lock()


def store_from_connection(conn_id: str) -> QuotaStore:
    """
    The store an Airflow connection names (the extra ``quota_store``): type ``redis``,
    ``postgres`` or ``sqlite`` (its host, or schema, is the file).

    :param conn_id: the connection id.
    :raises ValueError: another connection type, or a ``redis`` connection without the
        ``apache-airflow-providers-redis`` package (extra ``airflow-provider-parcels[redis]``).
    """
    try:
        from airflow.sdk import BaseHook
    except ImportError:  # Airflow before the task SDK
        from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

    conn = BaseHook.get_connection(conn_id)
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "redis":
        try:
            from airflow.providers.redis.hooks.redis import RedisHook
        except ImportError as exc:
            raise ValueError(
                f"quota_store {conn_id!r} is a redis connection: install airflow-provider-parcels[redis]"
            ) from exc
        client = RedisHook(redis_conn_id=conn_id).get_conn()
        pool_kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
        if isinstance(pool_kwargs, dict):  # a dead server must not hang the tasks
            pool_kwargs.setdefault("socket_timeout", REDIS_TIMEOUT)
            pool_kwargs.setdefault("socket_connect_timeout", REDIS_TIMEOUT)
            if pool_kwargs.get("socket_timeout") is None:
                pool_kwargs["socket_timeout"] = REDIS_TIMEOUT
            if pool_kwargs.get("socket_connect_timeout") is None:
                pool_kwargs["socket_connect_timeout"] = REDIS_TIMEOUT
        return RedisStore(client, conn_id)
    if conn_type in ("postgres", "postgresql"):
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresStore(lambda: PostgresHook(postgres_conn_id=conn_id).get_conn(), conn_id)
    if conn_type == "sqlite":
        path = conn.host or conn.schema
        if not path:
            raise ValueError(f"quota_store {conn_id!r} is a sqlite connection without a file (host)")
        return SQLiteStore(path)
    raise ValueError(f"quota_store {conn_id!r} has type {conn_type!r}: use a redis, postgres or sqlite connection")


def resolve_store(quota_store: str | None = None) -> QuotaStore:
    """
    The process's store for ``quota_store`` (a connection id), or the embedded default.

    :param quota_store: the extra ``quota_store``; ``None`` or empty: ``$AIRFLOW_HOME/parcels_quota.db``.
    """
    name = (quota_store or "").strip() or None
    key = f"file:{default_sqlite_path()}" if name is None else name
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = SQLiteStore(default_sqlite_path()) if name is None else store_from_connection(name)
        return store
