"""Tests of the package's layout: the rules its modules keep with one another."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "atroz_monitor"

# Underscore names of the standard library that are its documented interface.
STDLIB_PRIVATES = {
    "os._exit",  # exit without cleanup: a forked child must not run the parent's atexit
    "sys._getframe",
    "_thread._local",  # threading.local without importing threading
}
# namedtuple's public methods and fields carry an underscore so they cannot clash with fields.
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_privates(tree: ast.Module) -> set[str]:
    """The underscore names a module defines itself: functions, classes, module and class
    level names, ``__slots__`` entries, and attributes set on ``self`` or ``cls``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef))]:
        for stmt in scope.body:
            targets: list[ast.expr] = []
            if isinstance(stmt, ast.Assign):
                targets = stmt.targets
            elif isinstance(stmt, ast.AnnAssign):
                targets = [stmt.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        names.add(n.id)
                if isinstance(t, ast.Name) and t.id == "__slots__" and stmt.value is not None:
                    names.update(
                        c.value for c in ast.walk(stmt.value) if isinstance(c, ast.Constant)
                    )
    return {n for n in names if isinstance(n, str) and _is_private(n)}


def private_reaches(source: str) -> list[str]:
    """``line: expr._name`` for each access to an underscore attribute the module does not
    define itself, made through anything but ``self`` or ``cls``; and each
    ``from .module import _name`` (another module's private name)."""
    tree = ast.parse(source)
    own = _defined_privates(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if node.attr in own or node.attr in NAMEDTUPLE_API:
                continue
            text = ast.unparse(node)
            if text in STDLIB_PRIVATES:
                continue
            found.append(f"{node.lineno}: {text}")
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            for alias in node.names:
                if _is_private(alias.name):
                    found.append(f"{node.lineno}: from {'.' * node.level}{node.module or ''} "
                                 f"import {alias.name}")  # fmt: skip
    return sorted(found, key=lambda f: int(f.split(":")[0]))


def test_private_reaches_rule_flags_what_it_should() -> None:
    """The checker flags another object's and module's private names, not a module's own."""
    src = (
        "import os\n"
        "from .monitor import _pid\n"
        "class A:\n"
        "    __slots__ = ('_slot',)\n"
        "    def f(self, other, run):\n"
        "        self._x = 1\n"
        "        other._x, other._slot\n"
        "        run._emit('sample')\n"
        "        os._exit(0)\n"
    )
    assert private_reaches(src) == ["2: from .monitor import _pid", "8: run._emit"]


def test_no_private_reaches() -> None:
    """No module reads, writes or calls another module's private attributes or names."""
    bad = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found = private_reaches(path.read_text(encoding="utf-8"))
        if found:
            bad[str(path.relative_to(PACKAGE))] = found
    assert bad == {}
