"""A throw-away PostgreSQL server for the test session, and per-test databases on it.

``postgres_dsn`` (session): the DSN of database ``parcels_test``. With ``PARCELS_TEST_POSTGRES_DSN``
set, that server is used as it is (its user needs CREATEDB for ``postgres_conn_id``). Otherwise
the fixture starts a server of its own: ``initdb`` (found on PATH or under
``/usr/lib/postgresql/*/bin``) in a temporary directory, listening on 127.0.0.1 on a free port
and a unix socket in the same directory, durability switched off for speed; run as the
``postgres`` user when the tests run as root (PostgreSQL refuses root). It is stopped and deleted
when the session ends.

When no server can be had, every test that needs one FAILS with the reason, unless
``PARCELS_SKIP_POSTGRES=1`` turns that into a skip. ``./scripts/test`` installs PostgreSQL
through apt when it is missing.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_CONN_ID = "parcels_test_postgres"
TEST_DATABASE = "parcels_test"
_RUN_AS = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be found or started."""


def find_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, newest version first."""
    found = shutil.which("initdb")
    if found:
        bindir = Path(found).resolve().parent
        if (bindir / "pg_ctl").exists():
            return bindir
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb") + glob.glob("/usr/pgsql-*/bin/initdb")

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)

    for initdb in sorted(candidates, key=version, reverse=True):
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").exists():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ensure_user(name: str) -> None:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )


class LocalPostgres:
    """One PostgreSQL cluster in a temporary directory (started by :meth:`start`)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        # /tmp is traversable by the postgres user even when TMPDIR is a root-only directory.
        self.workdir = Path(tempfile.mkdtemp(prefix="parcels-pg-", dir="/tmp" if self.as_root else None))
        self.datadir = self.workdir / "data"
        self.logfile = self.workdir / "server.log"
        self.port: int | None = None

    def _run(self, *args: str, timeout: float = 120) -> None:
        kwargs: dict = {}
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if self.as_root:
            import pwd

            user = pwd.getpwnam(_RUN_AS)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            env["HOME"] = str(self.workdir)
        proc = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
        if proc.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise PostgresUnavailable(
                f"`{' '.join(args)}` failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{log}".rstrip()
            )

    def start(self) -> None:
        if self.as_root:
            _ensure_user(_RUN_AS)
            shutil.chown(self.workdir, _RUN_AS, _RUN_AS)
        self._run(
            "initdb", "-D", str(self.datadir), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"
        )
        for attempt in range(3):
            self.port = _free_port()
            options = (
                f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            try:
                self._run(
                    "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", options, "-w", "-t", "60", "start"
                )
                return
            except PostgresUnavailable:
                if attempt == 2:  # the port may have been taken between probe and bind: retry
                    raise

    def stop(self) -> None:
        if self.datadir.exists():
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def dsn(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"


def _admin_connect(dsn: str):
    try:
        import psycopg2
    except ImportError as exc:  # pragma: no cover - the [postgres] extra is missing
        raise PostgresUnavailable("psycopg2 is not installed: pip install -e '.[test,postgres]'") from exc
    conn = psycopg2.connect(dsn, connect_timeout=10)
    conn.autocommit = True
    return conn


def create_database(dsn: str, name: str) -> None:
    with contextlib.closing(_admin_connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')


def drop_database(dsn: str, name: str) -> None:
    with contextlib.closing(_admin_connect(dsn)) as conn, conn.cursor() as cur:
        try:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # PostgreSQL >= 13
        except Exception:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _unavailable(reason: str):
    message = f"PostgreSQL is not available: {reason}"
    if os.environ.get("PARCELS_SKIP_POSTGRES") == "1":
        pytest.skip(message + " (skipped: PARCELS_SKIP_POSTGRES=1)")
    pytest.fail(
        message + "\nRun the tests with ./scripts/test (installs PostgreSQL when missing), set "
        "PARCELS_TEST_POSTGRES_DSN to a server, or set PARCELS_SKIP_POSTGRES=1 to skip these tests.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN (``postgresql://...``) of an empty database on a PostgreSQL server for this session."""
    external = os.environ.get("PARCELS_TEST_POSTGRES_DSN")
    if external:
        try:
            with contextlib.closing(_admin_connect(external)):
                pass
        except Exception as exc:
            _unavailable(f"cannot connect to PARCELS_TEST_POSTGRES_DSN: {exc}")
        yield external
        return

    bindir = find_bindir()
    if bindir is None:
        _unavailable("no initdb on PATH or under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    server = LocalPostgres(bindir)
    try:
        server.start()
        create_database(server.dsn("postgres"), TEST_DATABASE)
    except Exception as exc:
        server.stop()
        _unavailable(f"could not start a server from {bindir}: {exc}")
    try:
        yield server.dsn(TEST_DATABASE)
    finally:
        server.stop()


@pytest.fixture
def postgres_conn_id(postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Id of an Airflow connection (``AIRFLOW_CONN_...`` env var) to a fresh, empty database.

    The database is created for this test and dropped after it, so tests never see each
    other's tables.
    """
    from psycopg2.extensions import parse_dsn

    dbname = f"t_{uuid.uuid4().hex[:16]}"
    create_database(postgres_dsn, dbname)
    params = parse_dsn(postgres_dsn)
    conn = {
        "conn_type": "postgres",
        "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port", 5432)),
        "login": params.get("user", "postgres"),
        "schema": dbname,
    }
    if params.get("password"):
        conn["password"] = params["password"]
    monkeypatch.setenv(f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}", json.dumps(conn))
    try:
        yield POSTGRES_CONN_ID
    finally:
        drop_database(postgres_dsn, dbname)
