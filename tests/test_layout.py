"""The package's code rules: modules talk through public names, and no function is so long
that it hides several jobs (issue 15)."""

from __future__ import annotations

import ast
import os
from pathlib import Path, PurePosixPath
from typing import NamedTuple

PACKAGE = Path(__file__).resolve().parent.parent / "atroz_monitor"

# Underscore names of the standard library that are its documented interface.
STDLIB_PRIVATES = {
    "os._exit",  # exit without cleanup: a forked child must not run the parent's atexit
    "sys._getframe",
    "_thread._local",  # threading.local without importing threading
    "argparse._SubParsersAction",  # the type add_subparsers() returns, only in annotations
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


MAX_LINES = 80
# A function may stay longer with a reason on its def line or the line above:
#     # long: one declarative table of the wire format, read top to bottom
MARK = "# long:"


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
    """No function under atroz_monitor/ is over 80 lines without a ``# long:`` reason."""
    offenders = [f"{x.where} ({x.lines} lines)" for x in _package_long_functions()]
    assert offenders == [], "split these, or say why they must be long (# long: ...): " + (
        ", ".join(offenders)
    )


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


# The stages of the data flow, earliest first: a module imports only from its own stage or
# an earlier one (``events`` is the log format every stage shares).
STAGES = ("events", "probe", "read", "view", "store", "record", "surface", "commands")
# The one import against the flow, and why it is there.
UPWARD = {
    ("record/monitor.py", "surface"): "Monitor.serve() starts the dashboard in-process; it "
    "is imported when called, so recording never loads the server",
}


def _stage(rel: PurePosixPath) -> str:
    if len(rel.parts) == 1:
        return "top" if rel.name in ("__init__.py", "__main__.py") else rel.stem
    return rel.parts[0]


def _targets(path: Path, rel: PurePosixPath) -> list[tuple[int, str]]:
    """(line, stage) of every atroz_monitor module this file imports, lazy ones included."""
    package = ["atroz_monitor", *rel.parts[:-1]]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                full = [*base, *(node.module.split(".") if node.module else [])]
            else:
                full = (node.module or "").split(".")
            if full[0] != "atroz_monitor":
                continue
            names = [full[1]] if len(full) > 1 else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [
                a.name.split(".")[1] for a in node.names if a.name.startswith("atroz_monitor.")
            ]
        else:
            continue
        # the version string is the package's, not a dependency on the public API
        found += [(node.lineno, n if n in STAGES else "top") for n in names if n != "__version__"]
    return found


def test_imports_follow_the_data_flow() -> None:
    """No module imports from a later stage of record -> read -> view -> surface -> commands
    (see the package docstring), except the one listed edge; the stage order is the flow."""
    root = PACKAGE
    rank = {s: i for i, s in enumerate((*STAGES, "top"))}
    against = []
    for path in sorted(root.rglob("*.py")):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        src = _stage(rel)
        for line, dst in _targets(path, rel):
            if rank[dst] > rank[src] and (str(rel), dst) not in UPWARD:
                against.append(f"{rel}:{line} ({src}) imports from {dst}")
    assert against == []


def test_every_module_has_a_stage() -> None:
    """The package root holds only the public API, the entry point and the log format; every
    other module lives in a stage subpackage."""
    root = PACKAGE
    assert sorted(p.name for p in root.glob("*.py")) == ["__init__.py", "__main__.py", "events.py"]
    assert sorted(
        p.name for p in root.iterdir() if p.is_dir() and p.name != "__pycache__"
    ) == sorted(STAGES[1:])
