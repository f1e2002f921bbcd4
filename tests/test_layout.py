"""The package's shape: no function so long that it hides several jobs (issue 15)."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import NamedTuple

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "atroz_monitor"
MAX_LINES = 80
# A function may stay longer with a reason on its def line or the line above:
#     # long: one declarative table of the wire format, read top to bottom
MARK = "# long:"

# Split by other branches; the lead removes entries at merge.
PENDING = {
    "exporters.py::otlp_json",
    "monitor.py::Monitor.__init__",
    "monitor.py::Phase.__enter__",
    "monitor.py::Phase.__exit__",
    "otlp.py::SpanBuilder._end",
    "state.py::_phase_end",
    "views.py::snapshot",
}


class Long(NamedTuple):
    where: str  # module.py::Class.function
    lines: int


def long_functions(source: str, module: str, limit: int = MAX_LINES) -> list[Long]:
    """The functions of ``source`` longer than ``limit`` lines (def line to last line) that
    give no ``# long:`` reason on their def line or the line above."""
    text = source.splitlines()
    found: list[Long] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                n = (child.end_lineno or child.lineno) - child.lineno + 1
                near = text[max(child.lineno - 2, 0) : child.lineno]
                if n > limit and not any(MARK in line for line in near):
                    found.append(Long(f"{module}::{name}", n))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def _package_long_functions() -> list[Long]:
    out: list[Long] = []
    for root, _, files in os.walk(PACKAGE):
        for f in sorted(files):
            if f.endswith(".py"):
                path = Path(root) / f
                out += long_functions(
                    path.read_text(encoding="utf-8"), f"{path.relative_to(PACKAGE)}"
                )
    return out


def test_no_long_functions() -> None:
    """No function under atroz_monitor/ is over 80 lines without a ``# long:`` reason
    (those other branches are splitting are listed in PENDING and only xfail)."""
    found = _package_long_functions()
    offenders = [f"{x.where} ({x.lines} lines)" for x in found if x.where not in PENDING]
    assert offenders == [], "split these, or say why they must be long (# long: ...): " + (
        ", ".join(offenders)
    )
    pending = sorted(f"{x.where} ({x.lines} lines)" for x in found)
    if pending:
        pytest.xfail("split by other branches, not merged yet: " + ", ".join(pending))


def test_long_function_check_flags_length_and_accepts_a_reason() -> None:
    """The check flags an 81-line function, passes an 80-line one, and accepts a long one
    with ``# long:`` on its def line or the line above (a method is named by its class)."""
    body = "    x = 1\n" * 79
    src = (
        f"def ok():\n{body}"  # 80 lines
        f"def too_long():\n{body}    x = 2\n"  # 81 lines
        f"# long: a table\ndef above():\n{body}    x = 2\n"
        f"def inline():  # long: a table\n{body}    x = 2\n"
        "class C:\n    def method(self):\n" + "        x = 1\n" * 80
    )
    assert long_functions(src, "m.py") == [Long("m.py::too_long", 81), Long("m.py::C.method", 81)]
