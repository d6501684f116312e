"""An isolated Airflow environment for one test session.

:func:`configure` must run before anything imports :mod:`airflow`: Airflow reads its
configuration once, at import time. The root ``tests/conftest.py`` calls it first thing.
Every pytest process (and every xdist worker) gets its own throw-away ``AIRFLOW_HOME``
with a SQLite metadata database (Airflow logs at WARNING; set PARCELS_TEST_AIRFLOW_LOG_LEVEL=INFO
to see every step of a ``dag.test()`` run); the database is created lazily by
:func:`ensure_metadata_db` (``run_dag`` calls it), so tests that never touch Airflow's
metadata pay nothing for it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from airflow_provider_parcels.sandbox.airflow_home import isolated_airflow_env

TESTS_DIR = Path(__file__).resolve().parent.parent
DAGS_FOLDER = TESTS_DIR / "dags"

_home: Path | None = None
_db_lock = threading.Lock()
_db_ready = False
migration_seconds: float | None = None


def configure() -> Path:
    """Point Airflow at a fresh temporary home; return it. Idempotent within a process."""
    global _home
    if _home is not None:
        return _home
    if "airflow.configuration" in sys.modules:
        raise RuntimeError(
            "airflow was imported before tests/conftest.py could isolate it (AIRFLOW_HOME would be "
            f"{os.environ.get('AIRFLOW_HOME', '~/airflow')!r}). A pytest plugin or an early import "
            "pulls in airflow at import time: make that import lazy (inside the fixture)."
        )
    home = Path(tempfile.mkdtemp(prefix="parcels-airflow-home-"))
    env = isolated_airflow_env(home, DAGS_FOLDER, os.environ.get("PARCELS_TEST_AIRFLOW_LOG_LEVEL", "WARNING"))
    os.environ.update(env)
    _home = home
    return home


def home() -> Path:
    if _home is None:
        raise RuntimeError("helpers.airflow_env.configure() has not run")
    return _home


def ensure_metadata_db() -> None:
    """Create Airflow's metadata database once per session (ORM create_all + alembic stamp)."""
    global _db_ready, migration_seconds
    if _db_ready:
        return
    with _db_lock:
        if _db_ready:
            return
        started = time.perf_counter()
        from airflow.utils import db

        db.initdb()
        migration_seconds = time.perf_counter() - started
        _db_ready = True


def cleanup() -> None:
    if _home is not None:
        shutil.rmtree(_home, ignore_errors=True)
