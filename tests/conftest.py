"""Root conftest: an isolated Airflow for the session, and the shared fixtures.

Airflow reads its configuration once, when first imported, so ``airflow_env.configure()`` runs
before anything imports airflow: a temporary AIRFLOW_HOME with a SQLite metadata DB (created
lazily, on first ``run_dag``/``airflow_db``) and ``tests/dags`` as the DAGs folder.
Helpers live in ``tests/helpers`` (import them as ``from helpers.dags import run_dag``).
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from helpers import airflow_env  # noqa: E402

airflow_env.configure()

import pytest  # noqa: E402
from helpers.connections import sqlite_conn_id  # noqa: E402,F401  (fixture)
from helpers.postgres import postgres_conn_id, postgres_dsn  # noqa: E402,F401  (fixtures)

_POSTGRES_FIXTURES = {"postgres_dsn", "postgres_conn_id"}


@pytest.fixture(autouse=True)
def _own_quota_ledger(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Each test gets its own embedded quota ledger (issue 17): the budgets and the minute pacing one
    test books on a sandbox key must not slow or refuse the next test using that key, nor may a
    rate one test's per-process limiter learned.
    """
    from airflow_provider_parcels.hooks.ratelimit import RateLimiter
    from airflow_provider_parcels.quota.ledger import QuotaLedger

    monkeypatch.setenv("PARCELS_QUOTA_DB", str(tmp_path_factory.mktemp("quota") / "parcels_quota.db"))
    monkeypatch.setattr(QuotaLedger, "_registry", {})
    monkeypatch.setattr(RateLimiter, "_registry", {})


@pytest.fixture
def hostile_server(parcels_sandbox):
    """A loopback API server that answers hostile things (``helpers.hostile_server``), proxying the sandbox."""
    from helpers.hostile_server import HostileServer

    server = HostileServer(upstream=parcels_sandbox.url).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's metadata DB for tests that need it without ``run_dag`` (which creates it itself)."""
    airflow_env.ensure_metadata_db()


def pytest_configure(config: pytest.Config) -> None:
    # Airflow's in-process execution API imports fastapi.testclient, which warns about httpx.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"airflow home: {airflow_env.home()} (dags folder {airflow_env.DAGS_FOLDER})"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use the PostgreSQL fixtures carry the `postgres` marker (so `-m "not postgres"` works).
    for item in items:
        if _POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if airflow_env.migration_seconds is not None:
        terminalreporter.write_line(f"airflow metadata DB created in {airflow_env.migration_seconds:.1f} s")


def pytest_unconfigure(config: pytest.Config) -> None:
    airflow_env.cleanup()
