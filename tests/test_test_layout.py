"""The tests mirror the modules: every module of the package (subpackages included) has its
own ``tests/test_<module>.py``, except the short justified list below, and tests/README.md
names every test file and static asset, so a feature's tests are found by name, not grep."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import REPO

PKG = REPO / "atroz_monitor"
TESTS = REPO / "tests"

# Modules whose tests live under another name, and why.
ELSEWHERE = {
    "atroz_monitor/__init__.py": (
        "test_package.py",
        "test___init__.py would be an odd name for the package's public names",
    ),
    "atroz_monitor/__main__.py": (
        "test_cli.py",
        "three lines calling cli.main; test_cli runs `python -m atroz_monitor` as a child",
    ),
}


def _reexports_only(path: Path) -> bool:
    """A subpackage __init__ that only imports and lists names: its modules' tests cover it."""
    tree = ast.parse(path.read_text())
    allowed = (ast.Import, ast.ImportFrom, ast.Expr, ast.Assign, ast.AnnAssign, ast.If)
    return all(isinstance(node, allowed) for node in tree.body) and not any(
        isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in ast.walk(tree)
    )


def expected_test_files() -> dict[str, str]:
    """Module path (relative to the repo) -> the test file that must test it."""
    out: dict[str, str] = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in ELSEWHERE:
            out[rel] = ELSEWHERE[rel][0]
        elif path.name == "__init__.py":
            if not _reexports_only(path):
                out[rel] = f"test_{path.parent.name}.py"  # a subpackage's own code
        else:
            out[rel] = f"test_{path.stem}.py"
    return out


def test_every_module_has_its_own_test_file() -> None:
    """Each module under atroz_monitor/ has tests/test_<module>.py (or its listed home)."""
    missing = {m: t for m, t in expected_test_files().items() if not (TESTS / t).is_file()}
    assert missing == {}, f"modules without their test file: {missing}"


def test_module_names_are_unique_across_subpackages() -> None:
    """Two modules with one name in different subpackages would share one test file."""
    stems: dict[str, list[str]] = {}
    for path in PKG.rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py"):
            stems.setdefault(path.stem, []).append(path.relative_to(REPO).as_posix())
    assert {s: p for s, p in stems.items() if len(p) > 1} == {}


def test_the_readme_names_every_test_file_and_static_asset() -> None:
    """tests/README.md names each tests/test_*.py and each file of atroz_monitor/surface/static/."""
    readme = (TESTS / "README.md").read_text()
    named = set(re.findall(r"\btest_\w+\.py\b", readme))
    files = {p.name for p in TESTS.glob("test_*.py")}
    assert sorted(files - named) == []
    assert sorted(named - files) == []  # no stale names either
    assets = {p.name for p in (PKG / "surface" / "static").iterdir() if p.is_file()}
    assert sorted(a for a in assets if a not in readme) == []


def test_the_layout_check_sees_a_missing_file(tmp_path: Path) -> None:
    """The rule itself: the expected test file of every module is derived from its name
    (sampler.py -> test_sampler.py, a subpackage's code -> test_<subpackage>.py)."""
    got = expected_test_files()
    assert got["atroz_monitor/record/sampler.py"] == "test_sampler.py"
    assert got["atroz_monitor/__init__.py"] == "test_package.py"
    sub = tmp_path / "record"
    sub.mkdir()
    (sub / "__init__.py").write_text('"""Re-exports."""\nfrom .x import y\n__all__ = ["y"]\n')
    assert _reexports_only(sub / "__init__.py")
    (sub / "__init__.py").write_text("def helper():\n    return 1\n")
    assert not _reexports_only(sub / "__init__.py")
