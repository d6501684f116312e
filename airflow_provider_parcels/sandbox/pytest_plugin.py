"""pytest fixtures that run the parcels sandbox inside your test process.

Installed with the package (entry point ``pytest11``: ``parcels_sandbox``), so in your own DAG
tests the fixtures are simply there::

    def test_my_tracking_dag(parcels_sandbox_clean, parcels_sandbox_env):
        # parcels_sandbox_env has set AIRFLOW_CONN_<API>_DEFAULT for all five APIs
        dag.test()                                   # hooks talk to the sandbox
        assert parcels_sandbox_clean.stats()["shipengine"]["requests"] > 0

    def test_quota(parcels_sandbox_clean, monkeypatch):
        sandbox = parcels_sandbox_clean
        sandbox.configure(rpm=5, faults="503=0.2", seed=7)      # undone before the next test
        monkeypatch.setenv(*sandbox.conn_env("trackflow", key="sandbox-free"))
        ...

Fixtures:

``parcels_sandbox`` (session)
    A started :class:`~airflow_provider_parcels.sandbox.SandboxServer` on a free loopback port.
``parcels_sandbox_clean`` (function)
    The same server, with stats, poll counters, quota windows, created orders/trackings and
    settings reset before the test.
``parcels_sandbox_env`` (function)
    Sets ``AIRFLOW_CONN_<API>_DEFAULT`` for the five APIs (key ``sandbox-key``) for the test and
    yields the server.

Over HTTP, ``POST /_sandbox/reset`` and ``/_sandbox/config`` need the server's token: send
``server.control_headers`` (``{"X-Sandbox-Token": server.control_token}``); the server's own
methods need none.

Pick outcomes with the tracking-number scheme of :mod:`airflow_provider_parcels.sandbox`
(``DLV...`` delivered, ``EXC...`` exception, ``NFD...`` not found, ``POLLD3...`` delivered at the
4th lookup, ...).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .apis import API_NAMES
from .server import SandboxServer
from .settings import SandboxSettings


@pytest.fixture(scope="session")
def parcels_sandbox() -> Iterator[SandboxServer]:
    """A sandbox serving all five APIs for the whole test session."""
    server = SandboxServer(port=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def parcels_sandbox_clean(parcels_sandbox: SandboxServer) -> SandboxServer:
    """The session sandbox with state and settings reset before the test."""
    parcels_sandbox.configure(**SandboxSettings().as_dict())
    parcels_sandbox.reset()
    return parcels_sandbox


@pytest.fixture
def parcels_sandbox_env(parcels_sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """Airflow connection variables ``AIRFLOW_CONN_<API>_DEFAULT`` pointing at the sandbox."""
    for api in API_NAMES:
        monkeypatch.setenv(*parcels_sandbox.conn_env(api))
    return parcels_sandbox
