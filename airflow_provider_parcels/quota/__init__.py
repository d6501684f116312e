"""
One quota ledger per API key (issue 17): every thread, coroutine, process and machine using a key
books its requests in one store, so together they stay under the plan's minute quota and count
its day and month budgets. See ``docs/quota.md``.
"""

from __future__ import annotations

from airflow_provider_parcels.quota.ledger import (
    PeriodStatus,
    QuotaExhausted,
    QuotaLedger,
    QuotaStatus,
    Reservation,
    credential_hash,
    ledger_key,
)
from airflow_provider_parcels.quota.limits import (
    PLAN_BUDGETS,
    QUOTA_EXTRAS,
    QuotaLimits,
    quota_store_of,
    resolve_limits,
)
from airflow_provider_parcels.quota.stores import (
    MemoryStore,
    PostgresStore,
    QuotaStore,
    QuotaStoreError,
    RedisStore,
    SQLiteStore,
    resolve_store,
)

__all__ = [
    "PLAN_BUDGETS",
    "QUOTA_EXTRAS",
    "MemoryStore",
    "PeriodStatus",
    "PostgresStore",
    "QuotaExhausted",
    "QuotaLedger",
    "QuotaLimits",
    "QuotaStatus",
    "QuotaStore",
    "QuotaStoreError",
    "RedisStore",
    "Reservation",
    "SQLiteStore",
    "credential_hash",
    "ledger_key",
    "quota_store_of",
    "resolve_limits",
    "resolve_store",
]
