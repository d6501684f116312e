"""
Eight mapped ``TrackParcelsOperator`` copies on one TrackFlow key, sharing its quota through the
ledger in Redis: the scale-out recipe of ``docs/scaling_out.md``, run on the CeleryExecutor by
``bench/celery_quota.py`` and ``tests/e2e/test_celery_quota.py``.

The connections are the caller's: ``e2e_trackflow_shared`` (a ``sandbox-starter`` key with
``requests_per_minute`` at the sandbox's plan, ``batch_size`` 1, ``quota_store`` naming
``e2e_quota_redis``) and ``parcels_demo_warehouse`` (the sandbox's SQLite warehouse). The params
``total`` (parcels in all, one lookup each) and ``tag`` (makes the tracking numbers unique per
run) come from the trigger's conf. Loads are skewed: the first copy holds half of the parcels.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, task

from airflow_provider_parcels.operators.tracking import TrackParcelsOperator

COPIES = 8
TRACKFLOW_CONN_ID = "e2e_trackflow_shared"
QUOTA_REDIS_CONN_ID = "e2e_quota_redis"


def loads(copies: int, total: int) -> list[int]:
    """A skewed split of ``total``: the first copy holds half, the others share the rest."""
    rest = total - total // 2
    return [total // 2] + [rest // (copies - 1) + (1 if i < rest % (copies - 1) else 0) for i in range(copies - 1)]


with DAG(
    dag_id="e2e_celery_quota",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    tags=["e2e"],
    params={"total": Param(300, type="integer", minimum=COPIES), "tag": Param("E2E", type="string")},
):

    @task
    def shards(params: dict | None = None) -> list[list[dict[str, str]]]:
        """The parcels of each copy (TrackFlow numbers the sandbox answers with a status)."""
        params = params or {}
        total, tag = int(params["total"]), str(params["tag"])
        numbers = [f"TRN{tag}{i:06d}" for i in range(total)]
        out, at = [], 0
        for n in loads(COPIES, total):
            out.append([{"carrier": "ups", "tracking_number": number} for number in numbers[at:at + n]])
            at += n
        return out

    TrackParcelsOperator.partial(
        task_id="track",
        conn_id=TRACKFLOW_CONN_ID,
        warehouse_conn_id="parcels_demo_warehouse",
        fail_on_errors=True,
    ).expand(parcels=shards())
