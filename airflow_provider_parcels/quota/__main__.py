"""
``python -m airflow_provider_parcels.quota status [CONN_ID] [--store STORE_CONN_ID] [--json]``

With a tracking connection: that key's minute rate, what is used and left of its day and month
budgets and when they reset, from the store its ``quota_store`` extra names (or the embedded
file). Without one: every key in the store (``--store``, default the embedded file). Keys are
shown as the API and a hash of the credential, never the credential.
"""

from __future__ import annotations

import argparse
import json
import sys

from airflow_provider_parcels.quota.ledger import QuotaLedger, QuotaStatus, credential_hash, status_from
from airflow_provider_parcels.quota.limits import quota_store_of, resolve_limits
from airflow_provider_parcels.quota.state import Peek
from airflow_provider_parcels.quota.stores import QuotaStoreError, resolve_store


def statuses(conn_id: str | None, store_conn_id: str | None = None) -> list[QuotaStatus]:
    """
    The statuses to print.

    :param conn_id: a tracking connection, or ``None`` for every key of the store.
    :param store_conn_id: the store to list when ``conn_id`` is ``None`` (``None``: the embedded file).
    :raises QuotaStoreError: the store is unreachable.
    """
    if conn_id:
        from airflow.sdk import BaseHook

        from airflow_provider_parcels.hooks import hook_class

        conn = BaseHook.get_connection(conn_id)
        cls = hook_class(conn.conn_type, conn_id)
        extra = conn.extra_dejson
        limits = resolve_limits(conn_id=conn_id, provider=cls.provider, extra=extra, plans=cls.plans,
                                default_plan=cls.default_plan)
        store = resolve_store(quota_store_of(extra))
        ledger = QuotaLedger(f"{cls.provider}:{credential_hash(conn.login, conn.password)}", limits, store)
        store.apply(ledger.key, Peek())  # unreachable: say so rather than show the fallback's zeros
        return [ledger.status()]
    store = resolve_store(store_conn_id)
    return [status_from(key, store.name, store.apply(key, Peek())) for key in store.list_keys()]


def main(argv: list[str] | None = None) -> int:
    """
    The command line.

    :param argv: the arguments (default ``sys.argv[1:]``).
    :return: the exit code: 0, or 1 when the store is unreachable.
    """
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_parcels.quota", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="quota used and left per API key")
    status.add_argument("conn_id", nargs="?", help="a tracking connection (default: every key of the store)")
    status.add_argument("--store", help="the quota_store connection to list (default: the embedded file)")
    status.add_argument("--json", action="store_true", help="one JSON object per key")
    args = parser.parse_args(argv)
    try:
        found = statuses(args.conn_id, args.store)
    except QuotaStoreError as exc:
        print(f"quota store unreachable: {exc}", file=sys.stderr)
        return 1
    if not found:
        print("no API key has used this quota store yet")
    for item in found:
        print(json.dumps(item.as_dict()) if args.json else item.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
