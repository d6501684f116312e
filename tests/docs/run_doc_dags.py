"""Run the DAG files written from the docs, each as ``python FILE`` would (its ``dag.test()``).

Usage: ``python run_doc_dags.py DAGS_DIR REPORT.json``, in an environment that gives Airflow its
own home with ``DAGS_DIR`` as the DAGs folder (Airflow 3.3 runs ``dag.test()`` only for a DAG of
its DAGs folder) and the connections the examples use. Started by
``tests/docs/test_doc_examples.py``: one process, one metadata database, for all the files.

The report maps each file name to ``{"runs": [{"dag_id", "state", "tasks"}], "error", "seconds"}``.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
import traceback
from pathlib import Path


def main(dags_dir: Path, report_path: Path) -> int:
    from airflow.sdk import DAG
    from airflow.utils import db

    db.initdb()
    runs: list[dict] = []
    original_test = DAG.test

    def recording_test(self, *args, **kwargs):
        dag_run = original_test(self, *args, **kwargs)
        tasks = {}
        for ti in dag_run.get_task_instances():
            key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            tasks[key] = str(getattr(ti.state, "value", ti.state))
        runs.append({"dag_id": self.dag_id, "state": str(getattr(dag_run.state, "value", dag_run.state)),
                     "tasks": tasks})
        return dag_run

    DAG.test = recording_test
    report = {}
    for path in sorted(dags_dir.glob("*.py")):
        runs.clear()
        started = time.monotonic()
        error = None
        print(f"=== {path.name}", flush=True)
        try:
            runpy.run_path(str(path), run_name="__main__")
        except BaseException:  # a DAG file may raise anything; report it and go on
            error = traceback.format_exc()
        report[path.name] = {"runs": list(runs), "error": error, "seconds": round(time.monotonic() - started, 1)}
        report_path.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
