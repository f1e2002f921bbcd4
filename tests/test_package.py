"""The package's public names (atroz_monitor/__init__.py): everything in ``__all__`` resolves,
the read API loads on first use, unknown names are an AttributeError, and the version is the
one pyproject.toml declares."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, child_env

import atroz_monitor


def test_every_public_name_resolves() -> None:
    """Each name of __all__ is an attribute of the package."""
    missing = [n for n in atroz_monitor.__all__ if not hasattr(atroz_monitor, n)]
    assert missing == []


def test_the_read_api_is_the_runs_modules() -> None:
    """load, Runs, RunView and PhaseView are atroz_monitor.surface.runs's own objects."""
    from atroz_monitor.surface import runs

    got = [getattr(atroz_monitor, n) for n in ("load", "Runs", "RunView", "PhaseView")]
    assert got == [runs.load, runs.Runs, runs.RunView, runs.PhaseView]


def test_the_read_api_is_not_imported_by_recording() -> None:
    """A fresh interpreter importing the package and recording a phase has not imported the
    read API's modules (atroz_monitor.surface.runs, .report): they load on first use."""
    code = (
        "import sys, tempfile, atroz_monitor\n"
        "with atroz_monitor.Monitor(tempfile.mkdtemp(), sample_interval=None) as m:\n"
        "    with m.phase('P'): pass\n"
        "print(sorted(n for n in ('atroz_monitor.surface.runs', 'atroz_monitor.commands.report') "
        "if n in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert (out.returncode, out.stdout) == (0, "[]\n"), out.stderr


def test_an_unknown_name_is_an_attribute_error() -> None:
    """A name the package does not have raises AttributeError naming it."""
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        atroz_monitor.nope  # noqa: B018


def test_the_version_is_pyprojects() -> None:
    """__version__ equals [project].version of pyproject.toml."""
    text = (Path(REPO) / "pyproject.toml").read_text()  # no tomllib: the suite runs on 3.10
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    (version,) = re.findall(r'^version = "([^"]+)"$', project, re.M)
    assert atroz_monitor.__version__ == version
