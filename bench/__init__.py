"""Benchmarks of airflow-provider-parcels: ``python -m bench [--quick]`` (see ``docs/benchmarks.md``)."""
