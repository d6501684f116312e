"""
Headless Chromium for the end-to-end tests, driven through Selenium and Debian's own ``chromium`` and
``chromium-driver`` packages (``scripts/test`` installs them with apt; nothing is downloaded: the driver's path is
given, so Selenium Manager never runs).

The browser starts with a fresh profile, no GPU, no background networking, component updates, sync or first-run
screens, and a host resolver that knows only loopback addresses: it can reach the Airflow API server on
127.0.0.1 and nothing else.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Where Debian's packages put the browser and its driver (``PARCELS_CHROMIUM`` / ``PARCELS_CHROMEDRIVER`` win).
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
CHROMEDRIVER_CANDIDATES = ("chromedriver", "/usr/lib/chromium/chromedriver")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
    # Only loopback: every other host name fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)


class BrowserUnavailable(RuntimeError):
    """Chromium or its driver is not installed (``scripts/test`` installs them)."""


def _which(env: str, candidates: tuple[str, ...]) -> str:
    override = os.environ.get(env)
    if override:
        return override
    for candidate in candidates:
        found = shutil.which(candidate)
        if found is None and os.path.isabs(candidate) and os.path.exists(candidate):
            found = candidate
        if found:
            return found
    raise BrowserUnavailable(f"none of {', '.join(candidates)} found: apt-get install chromium chromium-driver")


def chromium_paths() -> tuple[str, str]:
    """``(chromium, chromedriver)`` executables."""
    return _which("PARCELS_CHROMIUM", CHROMIUM_CANDIDATES), _which("PARCELS_CHROMEDRIVER", CHROMEDRIVER_CANDIDATES)


@contextmanager
def headless_chromium(profile_dir: Path, log_path: Path | None = None) -> Iterator[Any]:
    """
    A Selenium ``WebDriver`` for a headless Chromium with a new profile in ``profile_dir``; quit afterwards.

    :param profile_dir: an empty folder for ``--user-data-dir``.
    :param log_path: where chromedriver writes its log.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    # the DevTools network log: what the page sent and got (see :func:`api_calls`)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = Service(executable_path=chromedriver, log_output=str(log_path) if log_path else None)
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Callable[[], T], timeout: float = 20.0, interval: float = 0.2, what: str = "") -> T:
    """
    Poll ``condition`` until it returns something truthy (exceptions count as not yet); return it.

    :param condition: the check.
    :param timeout: seconds before an ``AssertionError``.
    :param interval: seconds between checks.
    :param what: said in the error.
    """
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            value = condition()
            if value:
                return value
            last = value
        except Exception as err:  # the page is still rendering
            last = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or condition}: last {last!r}")



class NetworkLog:
    """
    The page's API calls, from the DevTools network log (``goog:loggingPrefs`` performance): each as
    ``{"method", "url", "body", "status", "response"}``, the response body read back through DevTools once loaded.
    Entries are read as they come and kept, so a call whose answer arrives later is completed later.

    :param driver: the ``WebDriver`` of :func:`headless_chromium`.
    :param path_part: only URLs containing this (e.g. ``/api/v2/``).
    """

    def __init__(self, driver: Any, path_part: str = "/api/") -> None:
        self.driver = driver
        self.path_part = path_part
        self.calls: dict[str, dict[str, Any]] = {}
        self.start = 0

    def _read(self) -> None:
        import json

        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            method, params = message.get("method"), message.get("params", {})
            request_id = params.get("requestId")
            if method == "Network.requestWillBeSent" and self.path_part in params["request"]["url"]:
                request = params["request"]
                if request["method"] != "OPTIONS":
                    self.calls[request_id] = {"method": request["method"], "url": request["url"],
                                              "body": request.get("postData"), "status": None, "response": None}
            elif method == "Network.responseReceived" and request_id in self.calls:
                self.calls[request_id]["status"] = params["response"]["status"]
            elif method == "Network.loadingFinished" and request_id in self.calls:
                try:
                    body = self.driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": request_id})
                    self.calls[request_id]["response"] = body.get("body")
                except Exception:  # the body is gone (a redirect, an evicted buffer)
                    self.calls[request_id]["response"] = ""

    def mark(self) -> None:
        """Forget the calls made so far: :meth:`since_mark` returns only later ones."""
        self._read()
        self.start = len(self.calls)

    def since_mark(self, method: str, url_end: str) -> list[dict[str, Any]]:
        """The finished calls since :meth:`mark` with this method whose URL ends with ``url_end``."""
        self._read()
        later = list(self.calls.values())[self.start :]
        return [c for c in later if c["method"] == method and c["url"].split("?")[0].endswith(url_end)
                and c["status"] is not None and c["response"] is not None]
