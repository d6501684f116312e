"""Prints the packaging figures (tests/packaging/test_wheel.py): sizes, build and install times."""

from __future__ import annotations

import sys


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    module = sys.modules.get("test_wheel")
    figures = getattr(module, "FIGURES", None)
    if figures:
        terminalreporter.write_line("packaging: " + "; ".join(f"{k}: {v}" for k, v in figures.items()))
