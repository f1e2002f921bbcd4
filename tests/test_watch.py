"""Change notification (watch.py): inotify through ctypes tells which files in watched
directories were created, written, moved or deleted, and which directories went away;
checked with real file operations in a temporary directory."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from atroz_monitor.read.watch import DirWatch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux")


@pytest.fixture
def watch() -> Iterator[DirWatch]:
    w = DirWatch()
    assert w.ok  # Linux with a libc: inotify_init1 works
    yield w
    w.close()


def test_nothing_changed_is_an_empty_set(watch: DirWatch, tmp_path: Path) -> None:
    """A watched directory nobody touches: no names."""
    assert watch.add(str(tmp_path)) and watch.watching(str(tmp_path))
    assert watch.changed() == set()


def test_created_written_and_deleted_files_are_named(watch: DirWatch, tmp_path: Path) -> None:
    """Creating and writing a.jsonl, appending to an existing b.jsonl and deleting c.jsonl
    name exactly those three paths; the next call is empty again."""
    (tmp_path / "b.jsonl").write_text("x\n")
    (tmp_path / "c.jsonl").write_text("x\n")
    watch.add(str(tmp_path))
    (tmp_path / "a.jsonl").write_text("new\n")
    with open(tmp_path / "b.jsonl", "a") as f:
        f.write("more\n")
    (tmp_path / "c.jsonl").unlink()
    names = {str(tmp_path / n) for n in ("a.jsonl", "b.jsonl", "c.jsonl")}
    assert watch.changed() == names
    assert watch.changed() == set()


def test_a_rename_names_both_ends(watch: DirWatch, tmp_path: Path) -> None:
    """A file renamed inside the directory: its old and new paths."""
    (tmp_path / "old.jsonl").write_text("x\n")
    watch.add(str(tmp_path))
    os.rename(tmp_path / "old.jsonl", tmp_path / "new.jsonl")
    assert watch.changed() == {str(tmp_path / "old.jsonl"), str(tmp_path / "new.jsonl")}


def test_only_watched_directories_report(watch: DirWatch, tmp_path: Path) -> None:
    """Two directories, one watched: a write in the other is not reported."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    watch.add(str(a))
    (b / "x.jsonl").write_text("x\n")
    (a / "y.jsonl").write_text("y\n")
    assert watch.changed() == {str(a / "y.jsonl")}
    assert watch.watching(str(a)) and not watch.watching(str(b))


def test_a_deleted_directory_is_reported_and_unwatched(watch: DirWatch, tmp_path: Path) -> None:
    """A watched directory removed: the directory itself is in the changes, and it is no
    longer watched (watch it again if it comes back)."""
    d = tmp_path / "runs"
    d.mkdir()
    watch.add(str(d))
    d.rmdir()
    assert str(d) in (watch.changed() or set())
    assert not watch.watching(str(d))
    d.mkdir()
    assert watch.add(str(d)) and watch.watching(str(d))


def test_a_path_that_is_not_a_directory_cannot_be_watched(watch: DirWatch, tmp_path: Path) -> None:
    """A plain file or a missing path: add() is False (the caller polls instead)."""
    f = tmp_path / "file.jsonl"
    f.write_text("x\n")
    assert watch.add(str(f)) is False
    assert watch.add(str(tmp_path / "missing")) is False


def test_after_close_nothing_is_watched(tmp_path: Path) -> None:
    """A closed watch is not ok, adds nothing and reports no change."""
    w = DirWatch()
    w.close()
    assert (w.ok, w.add(str(tmp_path)), w.changed()) == (False, False, set())


def test_a_queue_overflow_says_everything_must_be_looked_at(
    watch: DirWatch, tmp_path: Path
) -> None:
    """More events than the kernel queues (fs.inotify.max_queued_events): changed() is None
    (look at everything once) and the overflow is counted."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 100_000:
        pytest.skip(f"max_queued_events is {limit}: too many files to create here")
    watch.add(str(tmp_path))
    for i in range(limit // 3 + 100):  # create + modify + close_write per file
        (tmp_path / f"f{i}").write_bytes(b"x")
    assert watch.changed() is None
    assert watch.overflows == 1
    assert watch.changed() == set()
