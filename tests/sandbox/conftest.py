"""Fixtures of the sandbox tests.

The ``parcels_sandbox*`` fixtures come from the package's pytest plugin (entry point
``pytest11``). When the package is not installed as a distribution (no entry point yet), the
plugin is registered here, once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import airflow_provider_parcels.sandbox.pytest_plugin as sandbox_plugin
from airflow_provider_parcels.sandbox import SandboxServer

DOC_EXAMPLES = Path(__file__).parent / "doc_examples"


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if manager.get_plugin("parcels_sandbox") is None and not manager.is_registered(sandbox_plugin):
        manager.register(sandbox_plugin, "parcels_sandbox")


@pytest.fixture
def sandbox(parcels_sandbox_clean: SandboxServer) -> SandboxServer:
    """The session sandbox, reset for this test."""
    return parcels_sandbox_clean


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A keep-alive session (closed after the test)."""
    with requests.Session() as session:
        yield session


@pytest.fixture
def doc_example():
    """Load a JSON example copied verbatim from the vendor docs."""

    def load(name: str):
        return json.loads((DOC_EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))

    return load
