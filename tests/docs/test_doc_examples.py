"""Every ```python block of README.md and docs/**/*.md compiles, imports and, where cheap, runs.

What is done with each block is described in ``docblocks.py``: DAG files are imported with
``DagBag`` and, when they call ``dag.test()``, run in a subprocess against the sandbox; the
example projects of a page (``project-file`` blocks) are run with pytest in a subprocess; any
other block is executed here, against the sandbox. The counts are printed at the end of the
session (``tests/docs/conftest.py``).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from docblocks import COUNTS, KNOWN_DIRECTIVES, ROOT, Block, all_blocks, example_environment, project_blocks

BLOCKS = all_blocks()
PROJECTS = project_blocks(BLOCKS)
RUNNER = Path(__file__).resolve().with_name("run_doc_dags.py")
SUBPROCESS_TIMEOUT = 600


def _ids(blocks: list[Block]) -> list[str]:
    return [b.id for b in blocks]


@pytest.fixture(scope="module")
def doc_sandbox() -> Iterator:
    """A sandbox of our own: other tests' settings and poll counters cannot leak in."""
    from airflow_provider_parcels.sandbox import SandboxServer

    with SandboxServer(port=0) as server:
        yield server


def clean_environment(extra: dict[str, str]) -> dict[str, str]:
    """``os.environ`` without any Airflow setting or connection of this test session, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(extra)
    return env


def test_the_docs_have_python_examples():
    """Guards the collection itself: a broken fence parser would silently test nothing."""
    if not (ROOT / "docs").is_dir():
        pytest.skip("no docs/ here (a copy of the tests outside the checkout)")
    assert len(BLOCKS) >= 10, [b.id for b in BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=_ids(BLOCKS))
def test_block_compiles_and_imports(block: Block):
    assert block.action in ("", *KNOWN_DIRECTIVES), f"{block.id}: unknown directive {block.directive!r}"
    if block.action == "project-file":
        assert block.project_path, f"{block.id}: write <!-- doc-test: project-file PATH -->"
    compile(block.code, block.id, "exec")
    COUNTS["compiled"] += 1
    exec(compile(block.imports_only(), block.id, "exec"), {"__name__": "doc_example_imports"})
    COUNTS["imports run"] += 1
    if block.action == "compile-only":
        COUNTS["compile-only"] += 1


SCRIPTS = [b for b in BLOCKS if not b.action and not b.is_dag]


@pytest.mark.parametrize("block", SCRIPTS, ids=_ids(SCRIPTS))
def test_block_runs_against_the_sandbox(block: Block, doc_sandbox, tmp_path: Path):
    from airflow_provider_parcels.hooks.ratelimit import RateLimiter

    env = example_environment(doc_sandbox, tmp_path)
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update(env)
    os.chdir(tmp_path)
    RateLimiter._registry.clear()
    try:
        exec(compile(block.code, block.id, "exec"), {"__name__": "__main__"})
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        RateLimiter._registry.clear()
    COUNTS["executed against the sandbox"] += 1


DAG_BLOCKS = [b for b in BLOCKS if b.is_dag and b.action != "compile-only"]


@pytest.mark.parametrize("block", DAG_BLOCKS, ids=_ids(DAG_BLOCKS))
def test_dag_block_imports_with_dagbag(block: Block, tmp_path: Path):
    from airflow.dag_processing.dagbag import DagBag

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / block.module_name).write_text(block.code)
    dagbag = DagBag(dag_folder=str(dags), bundle_path=dags)
    assert dagbag.import_errors == {}, f"{block.id}:\n" + "\n".join(dagbag.import_errors.values())
    assert dagbag.dags, f"{block.id} defines no DAG"
    COUNTS["DAG files imported with DagBag"] += 1


RUNNABLE_DAGS = [b for b in DAG_BLOCKS if b.runs_dag_test]


@pytest.fixture(scope="module")
def dag_runs(doc_sandbox, tmp_path_factory) -> tuple[dict, str]:
    """Run every DAG block that calls ``dag.test()``, in one subprocess with its own Airflow home."""
    root = tmp_path_factory.mktemp("doc-dag-runs")
    dags, home = root / "dags", root / "airflow-home"
    dags.mkdir()
    home.mkdir()
    for block in RUNNABLE_DAGS:
        (dags / block.module_name).write_text(block.code)
    env = clean_environment({
        **example_environment(doc_sandbox, root / "data"),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__SECRETS__BACKEND": "",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
    })
    report_path = root / "report.json"
    proc = subprocess.run(
        [sys.executable, str(RUNNER), str(dags), str(report_path)],
        env=env, cwd=root, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )
    output = (proc.stdout + proc.stderr)[-6000:]
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return report, f"runner exit {proc.returncode}; output (tail):\n{output}"


@pytest.mark.parametrize("block", RUNNABLE_DAGS, ids=_ids(RUNNABLE_DAGS))
def test_dag_block_runs_with_dag_test(block: Block, dag_runs):
    report, output = dag_runs
    entry = report.get(block.module_name)
    assert entry is not None, f"{block.id} was not run; {output}"
    assert entry["error"] is None, f"{block.id} raised:\n{entry['error']}\n{output}"
    assert entry["runs"], f"{block.id} called no dag.test()"
    for run in entry["runs"]:
        assert run["state"] == "success", f"{block.id}: {run}\n{output}"
    COUNTS["DAGs run with dag.test()"] += len(entry["runs"])


@pytest.mark.parametrize("page", sorted(PROJECTS), ids=[p.relative_to(ROOT).as_posix() for p in sorted(PROJECTS)])
def test_example_project_passes_its_own_tests(page: Path, tmp_path: Path):
    """The example project of a page (its ``project-file`` blocks), run like a user would: ``pytest``."""
    project = tmp_path / "project"
    for block in PROJECTS[page]:
        target = project / block.project_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=short", "--show-capture=no",
         "-W", "ignore::DeprecationWarning"],
        env=clean_environment({}), cwd=project, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )
    output = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"pytest in the example project of {page.name} failed:\n{output}"
    COUNTS["example projects run with pytest"] += 1
    COUNTS["example project files"] += len(PROJECTS[page])
