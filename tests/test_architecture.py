"""The code's shape is a contract: import-linter's layers, purity and no-cycle contracts
(pyproject.toml), plus what import-linter cannot see: function_app reaches only the HTTP edge,
the wiring and core vocabulary, never an edge class directly."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_function_app_calls_use_cases_only() -> None:
    tree = ast.parse((ROOT / "function_app.py").read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shared")
    }
    assert imported, "function_app imports nothing from shared?"
    assert not [m for m in imported if m.startswith("shared.edge")], imported


def test_function_app_handlers_are_a_few_lines() -> None:
    tree = ast.parse((ROOT / "function_app.py").read_text())
    handlers = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.decorator_list]
    assert len(handlers) >= 17
    long = {f.name: f.end_lineno - f.lineno for f in handlers if f.end_lineno - f.lineno > 10}
    assert long == {}
