"""Shared helpers for the test suite (imported as ``helpers.<module>``; ``tests/`` is on sys.path)."""
