"""The built distributions are complete, and the wheel works installed outside the checkout.

``python -m build`` makes the sdist and, from it, the wheel (so a file missing from the sdist
breaks the wheel build too); ``twine check`` passes on both. The wheel is installed into a
fresh venv (no system site-packages, dependencies from PyPI pinned to the versions of this test
environment so the resolver has no choices to make), and from a directory outside the checkout
the installed ``python -m airflow_provider_parcels.sandbox`` serves a ``track()`` of each API.
The sizes and the install time are printed at the end of the session.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import airflow_provider_parcels

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "airflow_provider_parcels"
DIST = "airflow-provider-parcels"
#: Figures printed by tests/packaging/conftest.py at the end of the session.
FIGURES: dict[str, str] = {}

pytestmark = [
    pytest.mark.large,
    pytest.mark.skipif(not (ROOT / PACKAGE).is_dir(), reason="needs the source checkout (this is a copy of the tests)"),
]


def run(cmd: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-3000:]}"
    return proc


def outside_env(home: Path) -> dict[str, str]:
    """The environment of a process that must know nothing of this checkout or test session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON"))}
    env.update(AIRFLOW_HOME=str(home), PYTHONNOUSERSITE="1")
    return env


def source_files(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")}


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], timeout=900)
    FIGURES["build (sdist, then the wheel from it)"] = f"{time.monotonic() - started:.0f} s"
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    FIGURES["wheel"] = f"{wheel.name}, {wheel.stat().st_size / 1024:.0f} KiB"
    FIGURES["sdist"] = f"{sdist.name}, {sdist.stat().st_size / 1024:.0f} KiB"
    return {"wheel": wheel, "sdist": sdist}


def test_twine_check_passes(dists):
    proc = run([sys.executable, "-m", "twine", "check", "--strict", str(dists["wheel"]), str(dists["sdist"])])
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_the_version_lives_in_one_place(dists):
    version = airflow_provider_parcels.__version__
    assert dists["wheel"].name == f"{PACKAGE}-{version}-py3-none-any.whl"
    assert dists["sdist"].name == f"{PACKAGE}-{version}.tar.gz"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert not re.search(r'(?m)^version\s*=', pyproject), "pyproject.toml must not repeat the version"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{version}]" in changelog or f"## {version}" in changelog, "CHANGELOG.md lacks this version"


def test_the_wheel_holds_everything_the_package_reads(dists):
    import tomllib

    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = f"{PACKAGE}-{airflow_provider_parcels.__version__}.dist-info"
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        metadata = wheel.read(f"{info}/METADATA").decode()
    # Every file of the package: modules, py.typed, the sandbox and any data file.
    missing = {f"{PACKAGE}/{name}" for name in source_files(ROOT / PACKAGE)} - names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    for required in ("py.typed", "sandbox/__main__.py", "sandbox/pytest_plugin.py", "get_provider_info.py"):
        assert f"{PACKAGE}/{required}" in names, required
    # Directories mapped into the wheel (example DAGs and their data files).
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    force = config["tool"]["hatch"]["build"]["targets"]["wheel"].get("force-include", {})
    for source, target in force.items():
        expected = {f"{target}/{name}" for name in source_files(ROOT / source)}
        assert expected <= names, f"{source} -> {target}: missing {sorted(expected - names)}"
    assert not [n for n in names if n.startswith(("tests/", "bench/", "docs/"))]
    assert "apache_airflow_provider" in entry_points and "get_provider_info:get_provider_info" in entry_points
    assert "parcels_sandbox = airflow_provider_parcels.sandbox.pytest_plugin" in entry_points
    assert "Requires-Python: >=3.10" in metadata


def test_the_sdist_holds_the_sources_docs_and_tests(dists):
    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for required in ("pyproject.toml", "README.md", "CHANGELOG.md", f"{PACKAGE}/py.typed", "docs/index.md",
                     "tests/smoke/test_smoke_installed.py"):
        assert required in names, required


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


TRACK_SCRIPT = """
import json, os, sys
from pathlib import Path

import airflow_provider_parcels
from airflow_provider_parcels.hooks import hook_class

base = sys.argv[1]
out = {"package_file": airflow_provider_parcels.__file__, "results": {}}
out["py_typed"] = (Path(airflow_provider_parcels.__file__).parent / "py.typed").is_file()
for api, prefix in [("whereparcel", "/whereparcel"), ("trackingmore", "/trackingmore/v2"),
                    ("trackflow", "/trackflow"), ("parcellab", "/parcellab"), ("shipengine", "/shipengine")]:
    conn = {"conn_type": api, "host": base + prefix, "password": "sandbox-key", "login": "sandbox-key",
            "extra": {"account": 1}}
    os.environ[f"AIRFLOW_CONN_{api.upper()}_DEFAULT"] = json.dumps(conn)
    hook = hook_class(api)()
    results = hook.track([{"carrier": "ups", "tracking_number": "DLV-WHEEL-1"},
                          {"carrier": "ups", "tracking_number": "NFD-WHEEL-2"}])
    out["results"][api] = [[r.status.value, r.error.code if r.error else None] for r in results]
    hook.close()
print("RESULT " + json.dumps(out))
"""


def test_the_installed_wheel_runs_the_sandbox_and_tracks_outside_the_checkout(dists, tmp_path):
    venv = tmp_path / "venv"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = outside_env(tmp_path / "airflow-home")
    run([sys.executable, "-m", "venv", str(venv)], env=env)
    python = venv / "bin" / "python"
    # The dependencies at the versions of this (tested) environment: no resolver search.
    pins = sorted({f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                   if d.metadata["Name"] and d.metadata["Name"].lower() != DIST})
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    started = time.monotonic()
    run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--progress-bar", "off",
         "--no-compile", "-c", str(constraints), str(dists["wheel"])], timeout=1200, env=env, cwd=outside)
    FIGURES["install of the wheel and its dependencies into a fresh venv"] = f"{time.monotonic() - started:.0f} s"

    port = free_port()
    sandbox = subprocess.Popen(
        [str(python), "-m", "airflow_provider_parcels.sandbox", "--port", str(port)],
        cwd=outside, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        first_line = sandbox.stdout.readline()
        assert f"listening on http://127.0.0.1:{port}" in first_line, first_line
        (outside / "track.py").write_text(TRACK_SCRIPT)
        proc = run([str(python), "track.py", f"http://127.0.0.1:{port}"], env=env, cwd=outside, timeout=300)
    finally:
        sandbox.send_signal(2)  # SIGINT: the sandbox stops cleanly
        tail, _ = sandbox.communicate(timeout=30)
    assert "Parcels sandbox stopped." in tail
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    result = json.loads(line[len("RESULT "):])
    package_file = Path(result["package_file"])
    assert venv in package_file.parents and ROOT not in package_file.parents, package_file
    assert result["py_typed"]
    for api, rows in result["results"].items():
        # TrackingMore `notfound` is a state of a tracking the account holds, not an error
        not_found_error = None if api == "trackingmore" else "not_found"
        assert rows == [["delivered", None], ["not_found", not_found_error]], (api, rows)
