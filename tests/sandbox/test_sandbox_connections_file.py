"""``python -m airflow_provider_parcels.sandbox --connections-file FILE``: the example DAGs'
connections (``parcels_demo_*``) in the file ``airflow connections import FILE`` reads."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from airflow_provider_parcels.hooks import hook_class

EXAMPLE_IDS = {f"parcels_demo_{name}" for name in
               ("whereparcel", "trackingmore", "trackflow", "parcellab", "shipengine", "warehouse")}


def test_connections_file_is_what_airflow_imports_and_each_connection_works(tmp_path: Path, monkeypatch):
    from airflow.secrets.local_filesystem import load_connections_dict  # what `airflow connections import` reads

    target = tmp_path / "connections.json"
    process = subprocess.Popen([sys.executable, "-m", "airflow_provider_parcels.sandbox", "--port", "0",
                                "--connections-file", str(target), "--warehouse-db", str(tmp_path / "wh.db")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(30, process.kill)  # never hang the suite on a silent child
    watchdog.start()
    try:
        banner = []
        for line in process.stdout:
            banner.append(line.rstrip("\n"))
            if line.startswith("Control:"):
                break
        assert f"Written to {target}: airflow connections import --overwrite {target}" in banner, banner
        connections = load_connections_dict(str(target))
        assert set(connections) == EXAMPLE_IDS
        warehouse = connections["parcels_demo_warehouse"]
        assert (warehouse.conn_type, warehouse.host) == ("sqlite", str(tmp_path / "wh.db"))
        for conn_id, conn in connections.items():
            if conn.conn_type == "sqlite":
                continue
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn.get_uri())
            ok, message = hook_class(conn.conn_type)(conn_id).test_connection()
            assert ok and f"connection {conn_id!r}" in message, message
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
