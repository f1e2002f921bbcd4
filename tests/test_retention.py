"""Tests for atroz_monitor.commands.retention: prune by limits, live runs, compression, the CLI."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor import Monitor
from atroz_monitor.commands.cli import main as cli_main
from atroz_monitor.commands.retention import (
    LiveRunError,
    Pruner,
    _plan,
    _Run,
    compress,
    parse_size,
    prune,
)
from atroz_monitor.read import reader

DAY = 86400.0
NOW = time.time()


def make_run(directory: Path, run_id: str, days_ago: float, phases: int = 3) -> Path:
    """A real finished run written by Monitor, its mtime set ``days_ago`` days back."""
    with Monitor(directory, run_id=run_id, sample_interval=None, capture=False) as mon:
        for i in range(phases):
            with mon.phase(f"P{i:02d}") as p:
                p.add_items(i)
    path = directory / f"{run_id}.jsonl"
    set_age(path, days_ago)
    return path


def set_age(path: Path, days_ago: float) -> None:
    t = NOW - days_ago * DAY
    os.utime(path, (t, t))


def names(directory: Path) -> list[str]:
    """The directory's entries but the catalog (a cache of the logs, kept in step)."""
    return sorted(n for n in os.listdir(directory) if n != ".atroz-catalog")


@pytest.fixture
def five(tmp_path: Path) -> Path:
    """Five finished runs r1 (5 days old) ... r5 (1 day old)."""
    for i in range(1, 6):
        make_run(tmp_path, f"r{i}", days_ago=6 - i)
    return tmp_path


def test_keep_runs_removes_oldest_first(five: Path) -> None:
    """--keep-runs 2 removes the three oldest runs, oldest first, and keeps the newest two."""
    removed = prune(five, keep_runs=2)
    assert [r.run for r in removed] == ["r1", "r2", "r3"]
    assert {r.reason for r in removed} == {"keep-runs"}
    assert all(r.error is None for r in removed)
    assert names(five) == ["r4.jsonl", "r5.jsonl"]


def test_older_than_removes_only_old_runs(five: Path) -> None:
    """--older-than 2.5 removes runs last written more than 2.5 days ago."""
    removed = prune(five, older_than_days=2.5, now=NOW)
    assert [r.run for r in removed] == ["r1", "r2", "r3"]
    assert names(five) == ["r4.jsonl", "r5.jsonl"]


def test_max_bytes_removes_until_under_limit(five: Path) -> None:
    """--max-bytes removes the oldest runs until the total fits, and no more."""
    sizes = {p.stem: p.stat().st_size for p in five.glob("*.jsonl")}
    limit = sizes["r4"] + sizes["r5"]
    removed = prune(five, max_bytes=limit)
    assert [r.run for r in removed] == ["r1", "r2", "r3"]
    assert sum(r.bytes for r in removed) == sizes["r1"] + sizes["r2"] + sizes["r3"]
    assert sum(p.stat().st_size for p in five.glob("*.jsonl")) <= limit
    assert names(five) == ["r4.jsonl", "r5.jsonl"]


def test_limits_combine(five: Path) -> None:
    """Every limit must hold: keep 4 and nothing older than 3.5 days removes r1 and r2."""
    removed = prune(five, keep_runs=4, older_than_days=3.5, now=NOW)
    assert [(r.run, r.reason) for r in removed] == [("r1", "older-than"), ("r2", "older-than")]
    removed = prune(five, keep_runs=1, max_bytes=10**9)
    assert [(r.run, r.reason) for r in removed] == [
        ("r3", "keep-runs"),
        ("r4", "keep-runs"),
    ]
    assert names(five) == ["r5.jsonl"]


def test_no_limit_hit_removes_nothing(five: Path) -> None:
    """Limits that already hold remove nothing."""
    assert prune(five, keep_runs=5, max_bytes=10**9, older_than_days=30, now=NOW) == []
    assert len(names(five)) == 5


def test_live_run_is_never_removed_even_if_oldest(tmp_path: Path) -> None:
    """A Monitor still open in this process is live: kept under every limit, even the oldest."""
    make_run(tmp_path, "done1", days_ago=3)
    make_run(tmp_path, "done2", days_ago=2)
    live = Monitor(tmp_path, run_id="live", sample_interval=None, capture=False)
    live.start()
    try:
        with live.phase("P00"):
            pass
        set_age(tmp_path / "live.jsonl", 10)  # oldest, and idle for days: still live
        removed = prune(tmp_path, keep_runs=0, max_bytes=0, older_than_days=0, now=NOW)
        assert sorted(r.run for r in removed) == ["done1", "done2"]
        assert names(tmp_path) == ["live.jsonl"]
    finally:
        live.close()
    # Once it has ended it is an ordinary finished run.
    assert [r.run for r in prune(tmp_path, keep_runs=0)] == ["live"]


def test_dead_owner_without_run_end(tmp_path: Path) -> None:
    """A crashed run (no run_end, owner gone) is removable once idle for 60 s, not before."""
    path = make_run(tmp_path, "crashed", days_ago=0)
    lines = path.read_bytes().splitlines(keepends=True)
    start = json.loads(lines[0])
    start["pid"], start["pid_start"] = 999_999_999, 1  # a process that does not exist
    path.write_bytes(json.dumps(start).encode() + b"\n" + b"".join(lines[1:-1]))
    assert prune(tmp_path, keep_runs=0) == []  # modified just now: maybe still written
    set_age(path, 1 / 24)
    assert [r.run for r in prune(tmp_path, keep_runs=0)] == ["crashed"]


def test_dry_run_lists_the_same_and_removes_nothing(five: Path) -> None:
    """--dry-run returns exactly what a real run removes, and removes nothing."""
    before = names(five)
    dry = prune(five, keep_runs=2, dry_run=True)
    assert names(five) == before
    real = prune(five, keep_runs=2)
    assert [(r.run, r.files, r.bytes, r.reason) for r in dry] == [
        (r.run, r.files, r.bytes, r.reason) for r in real
    ]


def test_run_spanning_rotated_parts_is_removed_whole(tmp_path: Path) -> None:
    """`<run>.jsonl`, `<run>.jsonl.1` and `<run>.1.jsonl` of one run go together."""
    path = make_run(tmp_path, "big", days_ago=4, phases=6)
    lines = path.read_bytes().splitlines(keepends=True)
    third = len(lines) // 3
    (tmp_path / "big.1.jsonl").write_bytes(b"".join(lines[:third]))
    (tmp_path / "big.jsonl.1").write_bytes(b"".join(lines[third : 2 * third]))
    path.write_bytes(b"".join(lines[2 * third :]))
    for name in ("big.1.jsonl", "big.jsonl.1", "big.jsonl"):
        set_age(tmp_path / name, 4)
    make_run(tmp_path, "small", days_ago=1)
    removed = prune(tmp_path, keep_runs=1)
    assert len(removed) == 1
    assert removed[0].run == "big"
    assert sorted(os.path.basename(f) for f in removed[0].files) == [
        "big.1.jsonl",
        "big.jsonl",
        "big.jsonl.1",
    ]
    assert removed[0].bytes == sum(len(line) for line in lines)
    assert names(tmp_path) == ["small.jsonl"]


def test_non_log_files_are_never_removed(five: Path) -> None:
    """Other files in a log directory stay, whatever the limits."""
    (five / "README.txt").write_text("notes")
    (five / ".r1.jsonl.gz.1.tmp").write_bytes(b"partial")
    prune(five, keep_runs=0)
    assert names(five) == [".r1.jsonl.gz.1.tmp", "README.txt"]


def test_not_a_log_directory_is_refused(tmp_path: Path) -> None:
    """A directory of non-log files raises ValueError and loses nothing."""
    (tmp_path / "thesis.tex").write_text("precious")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match="not a log directory"):
        prune(tmp_path, keep_runs=0)
    assert names(tmp_path) == ["sub", "thesis.tex"]
    with pytest.raises(ValueError, match="no such directory"):
        prune(tmp_path / "missing", keep_runs=0)
    with pytest.raises(ValueError, match="not a directory"):
        prune(tmp_path / "thesis.tex", keep_runs=0)


def test_empty_directory_is_fine(tmp_path: Path) -> None:
    """An empty directory is a log directory with nothing to remove."""
    assert prune(tmp_path, keep_runs=0) == []


def test_bad_limits_raise_before_anything(five: Path) -> None:
    """Negative or non-integer limits are rejected."""
    with pytest.raises(ValueError, match="keep_runs"):
        prune(five, keep_runs=-1)
    with pytest.raises(ValueError, match="max_bytes"):
        prune(five, max_bytes=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="older_than_days"):
        prune(five, older_than_days=float("nan"))
    assert len(names(five)) == 5


def test_compress_round_trips(tmp_path: Path) -> None:
    """A finished log gzipped reads back event for event, keeps its mtime, leaves no plain."""
    path = make_run(tmp_path, "fin", days_ago=2, phases=20)
    events = list(reader.iter_events(path))
    mtime = path.stat().st_mtime_ns
    target = compress(path)
    assert target == str(path) + ".gz"
    assert names(tmp_path) == ["fin.jsonl.gz"]
    assert list(reader.iter_events(target)) == events
    assert os.stat(target).st_mtime_ns == mtime
    with gzip.open(target, "rb") as f:
        assert f.read().count(b"\n") == len(events)


def test_compressed_runs_are_pruned_like_plain_ones(tmp_path: Path) -> None:
    """A .jsonl.gz run is grouped, aged and removed like a plain one."""
    compress(make_run(tmp_path, "old", days_ago=9))
    make_run(tmp_path, "new", days_ago=1)
    removed = prune(tmp_path, older_than_days=5, now=NOW)
    assert [(r.run, [os.path.basename(f) for f in r.files]) for r in removed] == [
        ("old", ["old.jsonl.gz"])
    ]


def test_compress_refuses_live_log(tmp_path: Path) -> None:
    """A log whose Monitor is still open is not compressed, and is left untouched."""
    with Monitor(tmp_path, run_id="busy", sample_interval=None, capture=False) as mon:
        with mon.phase("P00"):
            pass
        path = tmp_path / "busy.jsonl"
        set_age(path, 5)
        before = path.read_bytes()
        with pytest.raises(LiveRunError, match="still being written"):
            compress(path)
        assert path.read_bytes() == before
        assert names(tmp_path) == ["busy.jsonl"]


def test_compress_refuses_bad_targets(tmp_path: Path) -> None:
    """Already compressed, an existing .gz, or not a log: ValueError, nothing changed."""
    path = make_run(tmp_path, "x", days_ago=1)
    (tmp_path / "x.jsonl.gz").write_bytes(b"other")
    with pytest.raises(ValueError, match="already exists"):
        compress(path)
    with pytest.raises(ValueError, match="already compressed"):
        compress(tmp_path / "x.jsonl.gz")
    (tmp_path / "notes.txt").write_text("n")
    with pytest.raises(ValueError, match="not a run log"):
        compress(tmp_path / "notes.txt")
    assert names(tmp_path) == ["notes.txt", "x.jsonl", "x.jsonl.gz"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("123", 123), ("500M", 500 << 20), ("2G", 2 << 30), ("1.5k", 1536), ("10MiB", 10 << 20)],
)
def test_parse_size(text: str, expected: int) -> None:
    """Sizes in bytes or with binary K/M/G/T suffixes."""
    assert parse_size(text) == expected


def test_parse_size_rejects_junk() -> None:
    """A size that is not one raises ValueError naming it."""
    with pytest.raises(ValueError, match="'12Q'"):
        parse_size("12Q")


def test_pruner_run_once_counts(five: Path) -> None:
    """Pruner.run_once removes, compresses the kept runs, and counts what it did."""
    pruner = Pruner(five, keep_runs=2, compress=True)
    removed = pruner.run_once()
    assert [r.run for r in removed] == ["r1", "r2", "r3"]
    assert names(five) == ["r4.jsonl.gz", "r5.jsonl.gz"]
    assert pruner.health()["prune_removed_runs"] == 3
    assert pruner.health()["prune_compressed_files"] == 2
    assert pruner.health()["prune_errors"] == 0
    assert pruner.run_once() == []


def test_pruner_never_raises(tmp_path: Path) -> None:
    """On a directory that is not a log directory run_once returns [] and records why."""
    (tmp_path / "x.txt").write_text("x")
    pruner = Pruner(tmp_path, keep_runs=0)
    assert pruner.run_once() == []
    assert pruner.errors == 1
    assert pruner.last_error is not None and "not a log directory" in pruner.last_error
    with pytest.raises(ValueError, match="needs a limit"):
        Pruner(tmp_path)


# ---------------------------------------------------------------------------------------------
# The command line


def test_cli_prune_prints_removals_and_bytes(
    five: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`prune DIR --keep-runs 3` exits 0 and prints each removal and the bytes freed."""
    freed = sum((five / f"r{i}.jsonl").stat().st_size for i in (1, 2))
    assert cli_main(["prune", str(five), "--keep-runs", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("removed r1 (1 file, ")
    assert out[1].startswith("removed r2 (1 file, ")
    assert out[2].startswith("freed ") and f"({freed} bytes) from 2 runs" in out[2]
    assert names(five) == ["r3.jsonl", "r4.jsonl", "r5.jsonl"]


def test_cli_dry_run(five: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run prints 'would remove' and 'would free', and removes nothing."""
    assert cli_main(["prune", str(five), "--max-bytes", "1", "--dry-run", "--compress"]) == 0
    out = capsys.readouterr().out
    assert out.count("would remove ") == 5
    assert "would compress" not in out  # every run would go: nothing left to compress
    assert "would free " in out
    assert len(names(five)) == 5


def test_cli_compress_only(five: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`prune DIR --compress` gzips every finished plain log and removes none."""
    assert cli_main(["prune", str(five), "--compress"]) == 0
    assert capsys.readouterr().out.count("compressed ") == 5
    assert names(five) == [f"r{i}.jsonl.gz" for i in range(1, 6)]


def run_cli(args: list[str]) -> int:
    """The CLI's exit code, whether argparse exits or main returns."""
    try:
        return cli_main(args)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keep-runs", "-1"], "must not be negative"),
        (["--max-bytes", "12Q"], "not a size"),
        (["--older-than", "x"], "not a number"),
        ([], "nothing to do"),
    ],
)
def test_cli_bad_input_exits_2(
    five: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Bad arguments: exit 2, a message on stderr, nothing removed."""
    assert run_cli(["prune", str(five), *args]) == 2
    assert message in capsys.readouterr().err
    assert len(names(five)) == 5


def test_cli_not_a_log_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`prune` on a directory of other files: one line on stderr, exit 2, nothing removed."""
    (tmp_path / "data.csv").write_text("a,b")
    assert cli_main(["prune", str(tmp_path), "--keep-runs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not a log directory" in err
    assert names(tmp_path) == ["data.csv"]


# ---------------------------------------------------------------------------------------------
# The plan, as a property


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 1000), st.floats(0, 100), st.booleans()), min_size=0, max_size=12
    ),
    st.one_of(st.none(), st.integers(0, 12)),
    st.one_of(st.none(), st.integers(0, 5000)),
    st.one_of(st.none(), st.floats(0, 100)),
)
def test_plan_meets_limits_unless_blocked_by_live_runs(
    runs: list[tuple[int, float, bool]],
    keep: int | None,
    max_bytes: int | None,
    older: float | None,
) -> None:
    """Whatever the runs and limits: live runs stay, and every limit holds over what remains
    except where only live runs stand in the way; removals come oldest first."""
    now = 1000 * DAY
    objs = [_Run(f"r{i}", bytes=b, mtime=now - age * DAY) for i, (b, age, _) in enumerate(runs)]
    live = {f"r{i}" for i, (_, _, is_live) in enumerate(runs) if is_live}
    plan = _plan(objs, live, keep, max_bytes, older, now)
    gone = {r.key for r, _ in plan}
    assert not gone & live
    assert [r.mtime for r, _ in plan] == sorted(r.mtime for r, _ in plan)
    kept = [r for r in objs if r.key not in gone]
    finished_kept = [r for r in kept if r.key not in live]
    if keep is not None and len(kept) > keep:
        # Only live runs or the newest `keep` may remain.
        newest = sorted(objs, key=lambda r: (r.mtime, r.key))[len(objs) - keep :] if keep else []
        assert all(r in newest for r in finished_kept)
    if max_bytes is not None and sum(r.bytes for r in kept) > max_bytes:
        assert finished_kept == []
    if older is not None:
        assert all(r.mtime >= now - older * DAY for r in finished_kept)


def test_marker_scan_finds_run_end_across_chunks(tmp_path: Path) -> None:
    """A run_end after more than one read chunk of other lines is found (the log is finished)."""
    from atroz_monitor.commands import retention

    path = make_run(tmp_path, "long", days_ago=0)
    lines = path.read_bytes().splitlines(keepends=True)
    filler = b'{"ev":"log","run":"long","msg":"' + b"x" * 1000 + b'"}\n'
    body = lines[0] + filler * 3000 + b"".join(lines[1:])  # ~3 MB before run_end
    path.write_bytes(body)
    runs = retention._runs(str(tmp_path))
    assert runs["long"].ended == {"long"}
    assert retention._live(runs["long"], "/proc") is False


def test_keep_runs_after_cp_r_keeps_the_newest_by_start(tmp_path: Path) -> None:
    """After a plain ``cp -r`` (new mtimes, here the oldest run written last), --keep-runs 2
    keeps the two runs that started last, by the start time in their logs."""
    import subprocess

    src = tmp_path / "src"
    src.mkdir()
    for i in range(1, 6):
        make_run(src, f"r{i}", 0)
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(src), str(copy)], check=True)
    for i in range(1, 6):
        set_age(copy / f"r{i}.jsonl", i / DAY)  # r1 modified last: mtime order is reversed
    removed = prune(copy, keep_runs=2)
    assert [r.run for r in removed] == ["r1", "r2", "r3"]
    assert names(copy) == ["r4.jsonl", "r5.jsonl"]


def test_prune_keeps_the_catalog_in_step(five: Path) -> None:
    """Runs removed by prune leave the catalog at once, without a log being read again."""
    from atroz_monitor.read import catalog

    prune(five, keep_runs=2)
    before = catalog.reduced_logs
    cat = catalog.Catalog(five)
    assert [s["run"] for s in cat.recent()] == ["r4", "r5"]
    assert [s["run"] for s in cat.summaries()] == ["r4", "r5"]
    assert catalog.reduced_logs == before and cat.rebuilt == 0


def test_compress_moves_the_catalog_entry(five: Path) -> None:
    """A compressed log keeps its catalog entry (renamed): no log is read again after."""
    from atroz_monitor.commands.retention import _compress_kept
    from atroz_monitor.read import catalog

    done = _compress_kept(str(five), "/proc", False)
    assert [os.path.basename(p) for p, err in done if err is None] == [
        f"r{i}.jsonl" for i in range(1, 6)
    ]
    before = catalog.reduced_logs
    cat = catalog.Catalog(five)
    got = cat.summaries()
    assert [s["files"] for s in got] == [[f"r{i}.jsonl.gz"] for i in range(1, 6)]
    assert catalog.reduced_logs == before and cat.rebuilt == 0


def test_directory_left_with_only_its_catalog_is_still_a_log_directory(five: Path) -> None:
    """After --keep-runs 0 only the catalog is left; pruning again is not refused."""
    prune(five, keep_runs=0)
    assert os.listdir(five) == [".atroz-catalog"]
    assert prune(five, keep_runs=0) == []
