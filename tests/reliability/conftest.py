"""Fixtures of the reliability suite: pinned-clock sandboxes and a ``connect`` helper for hooks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability_support import FIGURES, connection_json, env_name, pinned_sandbox

from airflow_provider_parcels.hooks import hook_class
from airflow_provider_parcels.hooks.ratelimit import RateLimiter
from airflow_provider_parcels.sandbox import SandboxServer, SandboxSettings


@pytest.fixture(scope="session")
def pinned_server() -> Iterator[SandboxServer]:
    """One sandbox for the suite's function-scoped tests, its outcome clock frozen."""
    server = pinned_sandbox()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sandbox(pinned_server: SandboxServer) -> SandboxServer:
    """The pinned sandbox with default settings and zeroed state for this test."""
    pinned_server.configure(**SandboxSettings().as_dict())
    pinned_server.reset()
    return pinned_server


@pytest.fixture(autouse=True)
def _fresh_rate_limiters() -> Iterator[None]:
    """Limiters are per process and connection id: a pause left by one test must not slow the next."""
    RateLimiter._registry.clear()
    yield
    RateLimiter._registry.clear()


@pytest.fixture
def connect(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch):
    """``connect(api, key=..., conn_id=..., secret=..., hook_kwargs=..., **extra)`` -> a hook on the sandbox."""

    def make(api: str, key: str = "sandbox-key", conn_id: str | None = None, secret: str | None = None,
             hook_kwargs: dict | None = None, **extra):
        conn_id = conn_id or f"rel_{api}"
        monkeypatch.setenv(env_name(conn_id), connection_json(sandbox, api, key, secret, **extra))
        return hook_class(api)(conn_id, **(hook_kwargs or {}))

    return make


def pytest_terminal_summary(terminalreporter) -> None:
    """The reliability figures of this session, when its runs took place."""
    if not FIGURES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("parcels reliability figures")
    for api, f in FIGURES.get("faults", {}).items():
        write(f"faults  {api:<13} {f['parcels']:>6} parcels, {f['rows']:>6} rows ({f['dialect']}), lost {f['lost']}, "
              f"{f['requests']} requests in {f['seconds']} s, faults {f['faults']}, error rows {f['errors']}")
    for name, value in FIGURES.items():
        if name != "faults":
            write(f"{name}: {value}")
