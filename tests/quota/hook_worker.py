"""
One process of the hook-level quota tests: a real hook user (run as a script, one per process).

Argument: a JSON object: ``env`` (variables to set first, e.g. ``AIRFLOW_CONN_...``), ``api``,
``conn_id``, ``numbers`` (tracking numbers), ``carrier``, ``hook_kwargs``, ``use_async`` (track
through ``atrack``, the trigger's path). Prints ``ready``, waits for a line on stdin, tracks the
parcels, then prints one JSON line: ``codes`` (results per error code, ``ok`` for none),
``messages`` (one message per error code), ``stats`` (the hook's), ``seconds``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time


def main() -> None:
    """Run one worker as the JSON argument says."""
    spec = json.loads(sys.argv[1])
    os.environ.update(spec.get("env") or {})
    from airflow_provider_parcels.hooks import hook_class

    hook = hook_class(spec["api"])(spec["conn_id"], **(spec.get("hook_kwargs") or {}))
    _ = hook.ledger  # read the connection and open the store before the start
    parcels = [{"carrier": spec.get("carrier", "ups"), "tracking_number": n} for n in spec["numbers"]]
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    results = asyncio.run(hook.atrack(parcels)) if spec.get("use_async") else hook.track(parcels)
    seconds = time.monotonic() - started
    codes: dict[str, int] = {}
    messages: dict[str, str] = {}
    for result in results:
        code = result.error.code if result.error else "ok"
        codes[code] = codes.get(code, 0) + 1
        if result.error:
            messages.setdefault(code, result.error.message)
    hook.close()
    print(json.dumps({"codes": codes, "messages": messages, "stats": hook.stats.as_dict(), "seconds": seconds,
                      "fallback": hook.ledger.using_fallback}), flush=True)


if __name__ == "__main__":
    main()
