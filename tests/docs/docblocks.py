"""Finding the ```python blocks of README.md and docs/**/*.md, and what the doc tests do with each.

A block may be preceded (blank lines allowed) by one directive comment:

``<!-- doc-test: compile-only -->``
    compile it and run its imports, nothing else (a fragment that cannot run on its own).
``<!-- doc-test: project-file PATH -->``
    a file of the page's example project: written to PATH in a temporary project directory,
    which is then run with pytest in a subprocess (see ``test_example_projects``).

Without a directive a block is run as far as it cheaply can be:

- a DAG file (it builds a ``DAG(...)`` or uses ``@dag``) is written to a DAG folder and
  imported with ``DagBag`` (no import errors, at least one DAG); if it calls ``dag.test()``
  (under ``if __name__ == "__main__":``) it is also run, in a subprocess with its own Airflow
  home, against the sandbox;
- any other block is executed in the test process with the environment of
  :func:`example_environment`.
"""

from __future__ import annotations

import ast
import json
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIRECTIVE = re.compile(r"^<!--\s*doc-test:\s*(?P<body>.*?)\s*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
DAG_PATTERN = re.compile(r"\bDAG\(|@dag\b")
KNOWN_DIRECTIVES = ("compile-only", "project-file")

#: What the doc tests did, printed at the end of the session (tests/docs/conftest.py).
COUNTS: Counter = Counter()


@dataclass(frozen=True)
class Block:
    """One ```python block of a Markdown file."""

    path: Path
    line: int
    code: str
    directive: str = ""

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def action(self) -> str:
        return self.directive.split()[0] if self.directive else ""

    @property
    def project_path(self) -> str | None:
        parts = self.directive.split()
        return parts[1] if self.action == "project-file" and len(parts) == 2 else None

    @property
    def is_dag(self) -> bool:
        return bool(DAG_PATTERN.search(self.code)) and "airflow" in self.code

    @property
    def runs_dag_test(self) -> bool:
        return self.is_dag and "dag.test(" in self.code and self.action != "project-file"

    @property
    def module_name(self) -> str:
        """A file name for the block, unique across the docs."""
        stem = re.sub(r"[^0-9A-Za-z]+", "_", self.path.relative_to(ROOT).with_suffix("").as_posix())
        return f"doc_{stem}_{self.line}.py"

    def imports_only(self) -> str:
        """The block's top-level import statements, as code."""
        tree = ast.parse(self.code)
        body = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        return ast.unparse(ast.Module(body=body, type_ignores=[]))


def markdown_files(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown file under docs/, in a stable order."""
    files = [root / "README.md"] if (root / "README.md").is_file() else []
    docs = root / "docs"
    if docs.is_dir():
        files += sorted(docs.rglob("*.md"))
    return files


def parse_blocks(path: Path) -> list[Block]:
    """The ```python (or ```py) blocks of one Markdown file, with their directive."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang, indent = match["fence"], match["lang"].lower(), len(match["indent"])
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1  # the closing fence
        if lang not in ("python", "py", "python3"):
            continue
        directive = ""
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and (found := DIRECTIVE.match(lines[j].strip())):
            directive = found["body"]
        blocks.append(Block(path, start + 1, "\n".join(body) + "\n", directive))
    return blocks


def all_blocks(root: Path = ROOT) -> list[Block]:
    return [block for path in markdown_files(root) for block in parse_blocks(path)]


def project_blocks(blocks: list[Block]) -> dict[Path, list[Block]]:
    """The example-project files of each page that has some."""
    pages: dict[Path, list[Block]] = {}
    for block in blocks:
        if block.action == "project-file":
            pages.setdefault(block.path, []).append(block)
    return pages


# ---------------------------------------------------------------- the examples' world

#: Connections the examples may use besides the five ``<api>_default`` ones.
WAREHOUSE_CONN_ID = "parcels_wh"
ORDERS_CONN_ID = "orders_db"


def make_orders_db(path: Path) -> None:
    """The ``shipments`` table the SQL examples read: carrier, tracking number, order, dates."""
    today = date.today()
    rows = [
        (1, "ups", "1Z204E380338943508", "O-1001", today.isoformat(), None),
        (2, "ups", "DLV-ORDERS-0002", "O-1002", today.isoformat(), None),
        (3, "ups", "TRN-ORDERS-0003", "O-1003", (today - timedelta(days=1)).isoformat(), None),
        (4, "ups", "EXC-ORDERS-0004", "O-1004", (today - timedelta(days=1)).isoformat(), None),
        (5, "ups", "NFD-ORDERS-0005", "O-1005", (today - timedelta(days=1)).isoformat(), None),
        (6, "ups", "OFD-ORDERS-0006", "O-1006", (today - timedelta(days=9)).isoformat(), None),
        (7, "ups", "DLV-ORDERS-0007", "O-1007", (today - timedelta(days=20)).isoformat(),
         (today - timedelta(days=15)).isoformat()),
        (8, "ups", "449044304137821", "O-1008", today.isoformat(), None),
    ]
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS shipments (id INTEGER PRIMARY KEY, carrier TEXT, tracking_number TEXT,"
            " carrier_code TEXT, order_id TEXT, shipped_at TEXT, delivered_at TEXT)"
        )
        db.execute("DELETE FROM shipments")
        db.executemany(
            "INSERT INTO shipments (id, carrier, tracking_number, carrier_code, order_id, shipped_at, delivered_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(i, c, n, c, o, s, d) for i, c, n, o, s, d in rows],
        )
    db.close()


def example_environment(sandbox, workdir: Path) -> dict[str, str]:
    """
    The connections every example may use: the five ``<api>_default`` on the sandbox (key
    ``sandbox-key``; parcelLab account 1), ``parcels_wh`` (a SQLite warehouse) and
    ``orders_db`` (a SQLite database with a ``shipments`` table).
    """
    from airflow_provider_parcels.sandbox import API_NAMES

    workdir.mkdir(parents=True, exist_ok=True)
    orders = workdir / "orders.db"
    if not orders.exists():
        make_orders_db(orders)
    env = dict(sandbox.conn_env(api) for api in API_NAMES)
    env[f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "sqlite", "host": str(workdir / "warehouse.db")}
    )
    env[f"AIRFLOW_CONN_{ORDERS_CONN_ID.upper()}"] = json.dumps({"conn_type": "sqlite", "host": str(orders)})
    return env
