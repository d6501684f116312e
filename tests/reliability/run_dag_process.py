"""Run one DAG of tests/dags with ``dag.test()`` in this process, the way the crash tests need it.

``python run_dag_process.py DAG_ID CONF_JSON`` uses the Airflow environment it inherits (the
test session's AIRFLOW_HOME, metadata database and AIRFLOW_CONN_* connections); it prints
``state=<state>`` last and exits 0 when the run succeeded, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import sys

if __name__ == "__main__":
    dag_id, conf = sys.argv[1], json.loads(sys.argv[2])
    from airflow.dag_processing.dagbag import DagBag

    folder = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
    dagbag = DagBag(dag_folder=folder, bundle_path=folder)
    if dag_id not in dagbag.dags:
        print(f"no DAG {dag_id!r} in {folder}: {dagbag.import_errors}", flush=True)
        sys.exit(2)
    run = dagbag.dags[dag_id].test(run_conf=conf)
    print(f"state={run.state}", flush=True)
    sys.exit(0 if run.state == "success" else 1)
