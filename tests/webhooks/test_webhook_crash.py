"""Durable before 2xx: the receiver process dies after the commit and before the answer; the
vendor's redelivery to the restarted receiver leaves the event as one row, and nothing is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests
from webhook_support import TF_CONN, free_port, rows, shipment, signed

from airflow_provider_parcels.webhooks.app import URL_PREFIX

SERVER = textwrap.dedent(
    """
    import os, sys, uvicorn
    from airflow_provider_parcels.webhooks.app import create_standalone_app

    crash_marker = sys.argv[2]

    def after_commit():
        if os.path.exists(crash_marker):
            os.remove(crash_marker)
            os._exit(17)  # dies with the row committed and no answer sent

    uvicorn.run(create_standalone_app(after_commit=after_commit), host="127.0.0.1", port=int(sys.argv[1]),
                log_level="warning")
    """
)


def _start(script: Path, port: int, marker: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(script), str(port), str(marker)], env=dict(os.environ))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except requests.ConnectionError:
            if proc.poll() is not None:
                raise RuntimeError(f"receiver exited with {proc.returncode}") from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("receiver did not start")


def test_crash_between_commit_and_answer_then_redelivery_is_one_row(push_conns, warehouse_conn_id, tmp_path):
    warehouse = push_conns(warehouse_conn_id)
    script = tmp_path / "receiver.py"
    script.write_text(SERVER)
    marker = tmp_path / "crash-once"
    marker.touch()
    port = free_port()
    url = f"http://127.0.0.1:{port}{URL_PREFIX}/{TF_CONN}"
    body, headers = signed(shipment("EXC0042", "exception"))

    proc = _start(script, port, marker)
    try:
        try:
            answer = requests.post(url, data=body, headers=headers, timeout=10)
            got = answer.status_code
        except requests.ConnectionError:
            got = None
        assert got is None, "the first delivery must get no answer: the process died after its commit"
        assert proc.wait(timeout=10) == 17
        # committed before the crash: the row is there although the vendor saw no 2xx
        assert warehouse.status_counts() == {"exception": 1}
        events_before = rows(warehouse, "parcel_tracking_events")
    finally:
        if proc.poll() is None:
            proc.kill()

    proc = _start(script, port, marker)  # restarted; the vendor redelivers the same signed body
    try:
        answer = requests.post(url, data=body, headers=headers, timeout=10)
        assert answer.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert warehouse.status_counts() == {"exception": 1}
    assert rows(warehouse, "parcel_tracking_events") == events_before
    assert len(events_before) == 2
