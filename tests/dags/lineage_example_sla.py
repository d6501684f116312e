"""The example DAG ``parcels_sla_alerts`` in the tests' bundle, so tests/lineage can run it with dag.test() as the
scheduler would for a run started by a ``parcel_tracking`` asset event. Its DAG-run Deadline Alert is taken off:
Airflow 3.3.2's dag.test() crashes at the end of a successful run of a DAG that has one (tests/examples/dag_runner.py).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "example_dags" / "parcels_sla_alerts.py"
_spec = importlib.util.spec_from_file_location("lineage_example_parcels_sla_alerts", _PATH)
assert _spec is not None and _spec.loader is not None
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)

dag = example.dag
dag.deadline = None
