"""The end-to-end tests' one Airflow deployment per session (see ``airflow_deployment.py``).

These tests carry the ``e2e`` marker, which the default test run deselects (pytest ``addopts``
in pyproject.toml); ``./scripts/test -m e2e`` runs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from airflow_deployment import E2E_DAGS, AirflowDeployment, deployed


@pytest.fixture(scope="session")
def airflow_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowDeployment]:
    """A running Airflow (four processes) and sandbox; stopped at the end of the session, however it ends."""
    deployment = AirflowDeployment(tmp_path_factory.mktemp("e2e"), extra_dags=sorted(E2E_DAGS.glob("*.py")),
                                   max_seconds=float(os.environ.get("PARCELS_E2E_MAX_SECONDS", "900")))
    with deployed(deployment):
        yield deployment
