"""Prints what the documentation tests did (tests/docs/test_doc_examples.py)."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    from docblocks import COUNTS, all_blocks

    if not COUNTS:
        return
    blocks = all_blocks()
    files = len({b.path for b in blocks})
    done = "; ".join(f"{what}: {n}" for what, n in COUNTS.items())
    terminalreporter.write_line(f"doc examples: {len(blocks)} python blocks in {files} Markdown files; {done}")
