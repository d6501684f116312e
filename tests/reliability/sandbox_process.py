"""Serve a pinned-clock sandbox from its own process (the suite's heavy runs use both cores).

``python sandbox_process.py FROZEN_EPOCH`` prints the port on the first line of stdout, then
serves until its stdin is closed (so it never outlives the test process that started it).
"""

from __future__ import annotations

import sys

from reliability_support import pinned_sandbox

if __name__ == "__main__":
    server = pinned_sandbox(float(sys.argv[1]))
    print(server.port, flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()
