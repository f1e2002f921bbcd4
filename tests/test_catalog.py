"""The catalog: per-run summaries of a log directory, rebuilt from the logs when needed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest
from helpers import child_env
from hypothesis import given, settings
from hypothesis import strategies as hs

from atroz_monitor import Monitor
from atroz_monitor.read import catalog
from atroz_monitor.read.catalog import Catalog


def _write_run(d, rid, t0, durations, status="completed", name="nightly", tags=None, plan=None):
    """A log ``d/rid.jsonl`` with phases of the given durations (ms), ended unless None."""
    evs = [
        {"ev": "run_start", "run": rid, "pid": 1, "seq": 1, "ts": t0, "v": 1, "name": name,
         "host": "h1", "tags": tags or {},
         "plan": [{"id": k, "name": "n" + k} for k in plan or durations]},
    ]  # fmt: skip
    t, seq = t0, 2
    for k, ms in durations.items():
        evs.append({"ev": "phase_start", "run": rid, "pid": 1, "seq": seq, "ts": t,
                    "span": f"1.{seq}", "phase": k, "name": "n" + k})  # fmt: skip
        t += ms / 1000
        evs.append({"ev": "phase_end", "run": rid, "pid": 1, "seq": seq + 1, "ts": t,
                    "span": f"1.{seq}", "phase": k, "name": "n" + k, "status": "completed",
                    "duration_ms": ms, "cpu_ms": ms / 2, "items": 4,
                    "peak_rss_bytes": 1000})  # fmt: skip
        seq += 2
    if status is not None:
        evs.append({"ev": "run_end", "run": rid, "pid": 1, "seq": seq, "ts": t, "status": status})
    path = os.path.join(d, rid + ".jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in evs)
    return path


def test_summarize_carries_per_phase_figures(tmp_path):
    """summarize gives the run's status, duration and each key's mean figures."""
    _write_run(tmp_path, "r1", 1000.0, {"A": 100.0, "B": 300.0})
    (s,) = catalog.summarize_files([str(tmp_path / "r1.jsonl")])
    assert s["run"] == "r1" and s["name"] == "nightly" and s["status"] == "completed"
    assert s["start"] == 1000.0 and s["end"] == pytest.approx(1000.4)
    assert s["files"] == ["r1.jsonl"] and s["host"] == "h1"
    assert s["phases"]["B"]["duration_ms"] == 300.0
    assert s["phases"]["B"]["cpu_ms"] == 150.0
    assert s["phases"]["A"]["name"] == "nA"
    assert s["phases"]["A"]["items"] == 4 and s["phases"]["A"]["count"] == 1


def test_summaries_oldest_first_and_file_written_private(tmp_path):
    """summaries() lists runs oldest first by start and writes a 0600 catalog file."""
    _write_run(tmp_path, "b", 2000.0, {"A": 10.0})
    _write_run(tmp_path, "a", 3000.0, {"A": 20.0})
    _write_run(tmp_path, "c", 1000.0, {"A": 30.0})
    got = [s["run"] for s in Catalog(tmp_path).summaries()]
    assert got == ["c", "b", "a"]
    mode = stat.S_IMODE(os.stat(tmp_path / catalog.FILE).st_mode)
    assert mode == 0o600


def test_unchanged_directory_reduces_no_log(tmp_path):
    """A second refresh with nothing changed summarises no log again (cached by signature)."""
    for i in range(5):
        _write_run(tmp_path, f"r{i}", 1000.0 + i, {"A": 10.0})
    Catalog(tmp_path).summaries()
    before = catalog.reduced_logs
    cat = Catalog(tmp_path)
    assert len(cat.summaries()) == 5
    assert catalog.reduced_logs == before
    assert cat.rebuilt == 0


def test_rebuilt_after_deletion(tmp_path):
    """A deleted catalog is rebuilt from the logs with the same summaries."""
    for i in range(3):
        _write_run(tmp_path, f"r{i}", 1000.0 + i, {"A": 10.0 + i})
    first = Catalog(tmp_path).summaries()
    os.unlink(tmp_path / catalog.FILE)
    cat = Catalog(tmp_path)
    again = cat.summaries()
    assert again == first and cat.rebuilt == 3
    assert (tmp_path / catalog.FILE).exists()


def test_corrupt_line_is_not_trusted(tmp_path):
    """A catalog line altered on disk fails its checksum and its log is summarised again."""
    _write_run(tmp_path, "r0", 1000.0, {"A": 10.0})
    _write_run(tmp_path, "r1", 1001.0, {"A": 20.0})
    Catalog(tmp_path).summaries()
    p = tmp_path / catalog.FILE
    data = p.read_bytes().replace(b'"duration_ms":20.0', b'"duration_ms":99.0')
    assert b"99.0" in data
    p.write_bytes(data)
    cat = Catalog(tmp_path)
    got = {s["run"]: s["phases"]["A"]["duration_ms"] for s in cat.summaries()}
    assert got == {"r0": 10.0, "r1": 20.0}
    assert cat.rebuilt == 1 and cat.bad_lines == 1
    assert b"99.0" not in p.read_bytes()  # rewritten clean


def test_torn_write_is_detected(tmp_path):
    """A catalog cut in the middle of a line (a crash) keeps its whole lines, redoes the rest."""
    for i in range(3):
        _write_run(tmp_path, f"r{i}", 1000.0 + i, {"A": 10.0 + i})
    Catalog(tmp_path).summaries()
    p = tmp_path / catalog.FILE
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 40])
    cat = Catalog(tmp_path)
    assert [s["phases"]["A"]["duration_ms"] for s in cat.summaries()] == [10.0, 11.0, 12.0]
    assert cat.rebuilt == 1


def test_stale_entry_when_log_changes(tmp_path):
    """A log rewritten after it was catalogued is summarised again (size/mtime signature)."""
    _write_run(tmp_path, "r0", 1000.0, {"A": 10.0})
    assert Catalog(tmp_path).summaries()[0]["phases"]["A"]["duration_ms"] == 10.0
    _write_run(tmp_path, "r0", 1000.0, {"A": 55.0, "B": 1.0})
    assert Catalog(tmp_path).summaries()[0]["phases"]["A"]["duration_ms"] == 55.0


def test_removed_log_leaves_the_catalog(tmp_path):
    """An entry whose log was deleted is dropped."""
    _write_run(tmp_path, "r0", 1000.0, {"A": 10.0})
    _write_run(tmp_path, "r1", 1001.0, {"A": 10.0})
    cat = Catalog(tmp_path)
    assert len(cat.summaries()) == 2
    os.unlink(tmp_path / "r0.jsonl")
    assert [s["run"] for s in cat.summaries()] == ["r1"]
    assert [s["run"] for s in Catalog(tmp_path).recent()] == ["r1"]


def test_open_run_hidden_until_silent(tmp_path):
    """A run without run_end is left out while recent, shown interrupted once silent."""
    _write_run(tmp_path, "r0", 1000.0, {"A": 10.0}, status=None)
    cat = Catalog(tmp_path)
    assert cat.summaries(now=1000.02) == []
    assert cat.summaries(now=1000.02, include_open=True)[0]["status"] == "running"
    assert cat.summaries(now=5000.0)[0]["status"] == "interrupted"


def test_recent_reads_the_tail_only(tmp_path):
    """recent(limit) returns the newest entries of the catalog without reducing any log."""
    for i in range(10):
        _write_run(tmp_path, f"r{i:02d}", 1000.0 + i, {"A": 10.0})
    Catalog(tmp_path).refresh()
    before = catalog.reduced_logs
    got = Catalog(tmp_path).recent(3)
    assert [s["run"] for s in got] == ["r07", "r08", "r09"]
    assert catalog.reduced_logs == before


def test_planted_symlink_is_not_followed(tmp_path):
    """A symlink planted as the catalog is never read or written through (replaced, or refused)."""
    target = tmp_path / "elsewhere"
    target.write_text("secret\n")
    d = tmp_path / "runs"
    d.mkdir()
    _write_run(d, "r0", 1000.0, {"A": 10.0})
    os.symlink(target, d / catalog.FILE)
    cat = Catalog(d)
    assert [s["run"] for s in cat.summaries()] == ["r0"]
    assert target.read_text() == "secret\n"
    assert not os.path.islink(d / catalog.FILE)  # the rename replaced the link itself
    sums = cat.summaries()
    os.unlink(d / catalog.FILE)
    os.symlink(target, d / catalog.FILE)
    with pytest.raises(OSError):
        cat.record(d / "r0.jsonl", sums)
    assert target.read_text() == "secret\n"


def test_monitor_appends_its_summary(tmp_path):
    """A Monitor on a directory appends its run's summary to the catalog when it ends."""
    with Monitor(tmp_path, sample_interval=None, capture=False) as mon:
        with mon.phase("P00"):
            pass
    got = Catalog(tmp_path).recent()
    assert [s["run"] for s in got] == [mon.run_id]
    assert got[0]["phases"]["P00"]["count"] == 1


_CONCURRENT = r"""
import sys
import time
from atroz_monitor import Monitor
from atroz_monitor.read.catalog import Catalog
d, n, k = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    with Monitor(d, sample_interval=None, capture=False, run_id=f"{k}-{i:03d}") as mon:
        with mon.phase("P00"):
            pass
    Catalog(d).refresh()
"""


def test_concurrent_writers_and_readers(tmp_path):
    """Two processes that each run, append and compact at once leave a catalog of every run."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT, str(tmp_path), "15", k], env=child_env()
        )  # fmt: skip
        for k in ("a", "b")
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    want = {f"{k}-{i:03d}" for k in "ab" for i in range(15)}
    cat = Catalog(tmp_path)
    assert {s["run"] for s in cat.summaries()} == want
    # and the file now holds all of them without rebuilding anything more
    before = catalog.reduced_logs
    assert {s["run"] for s in Catalog(tmp_path).summaries()} == want
    assert catalog.reduced_logs == before


@settings(max_examples=60, deadline=None)
@given(hs.binary(max_size=300))
def test_decode_never_trusts_garbage(blob):
    """Random bytes never pass for a catalog line (the checksum rejects them)."""
    assert catalog.decode(blob) is None


@settings(max_examples=60, deadline=None)
@given(hs.dictionaries(hs.text(max_size=5), hs.integers() | hs.text(max_size=5), max_size=5))
def test_encode_decode_round_trip(obj):
    """Every encoded line decodes to the same object, and any flipped byte is rejected."""
    line = catalog.encode(obj)
    assert catalog.decode(line) == obj
    flipped = bytearray(line)
    flipped[len(line) // 2] ^= 0x01
    assert catalog.decode(bytes(flipped)) is None


def _logs_read(monkeypatch):
    """Every log path the reader opens from now on (a test hook on reader.iter_events)."""
    from atroz_monitor.read import reader

    seen: list[str] = []
    real = reader.iter_events

    def spy(path, *a, **kw):
        seen.append(os.path.basename(os.fspath(path)))
        return real(path, *a, **kw)

    monkeypatch.setattr(reader, "iter_events", spy)
    return seen


def _pipeline(d, rid, **kw):
    with Monitor(d, sample_interval=None, capture=False, run_id=rid, **kw) as mon:
        for k in range(3):
            with mon.phase(f"P{k:02d}"):
                pass
    return mon


def test_run_start_reads_no_earlier_log(tmp_path, monkeypatch):
    """With 80 catalogued runs, a run reads only its own log (to catalogue itself at its
    end) and still gets all 80 as history for its p95 thresholds."""
    for i in range(80):
        _write_run(tmp_path, f"r{i:03d}", 1000.0 + i, {"P00": 10.0 + i, "P01": 5.0})
    Catalog(tmp_path).refresh()
    seen = _logs_read(monkeypatch)
    with Monitor(tmp_path, sample_interval=None, capture=False, run_id="now") as mon:
        with mon.phase("P00"):
            hist = mon.history()
    assert seen == ["now.jsonl"]
    assert len(hist) == 80
    assert hist[0]["run"] == "r000" and hist[-1]["run"] == "r079"


def test_history_is_the_latest_runs(tmp_path, monkeypatch):
    """A live monitor's history is bounded: the catalog's latest HISTORY_RUNS runs."""
    from atroz_monitor.record import monitor as M

    monkeypatch.setattr(M, "HISTORY_RUNS", 30)
    for i in range(70):
        _write_run(tmp_path, f"r{i:03d}", 1000.0 + i, {"P00": 10.0})
    Catalog(tmp_path).refresh()
    mon = Monitor(tmp_path, sample_interval=None, capture=False, run_id="now")
    got = [s["run"] for s in mon.history()]
    assert got == [f"r{i:03d}" for i in range(40, 70)]


def test_big_directory_without_catalog_is_not_read_at_run_start(tmp_path, monkeypatch):
    """A directory of more than SMALL_DIR logs and no catalog: a run reads none of them (no
    history until serve, report or prune catalogues it)."""
    for i in range(catalog.SMALL_DIR + 1):
        _write_run(tmp_path, f"r{i:03d}", 1000.0 + i, {"P00": 10.0})
    seen = _logs_read(monkeypatch)
    mon = _pipeline(tmp_path, "now")
    assert seen == ["now.jsonl"]
    assert mon.history() == []


def test_small_directory_without_catalog_is_catalogued(tmp_path):
    """A directory of a few logs from before the catalog gets one at the first run start,
    and those runs are its history."""
    for i in range(3):
        _write_run(tmp_path, f"r{i}", 1000.0 + i, {"P00": 10.0})
    mon = _pipeline(tmp_path, "now")
    assert [s["run"] for s in mon.history()] == ["r0", "r1", "r2"]
    assert {s["run"] for s in Catalog(tmp_path).recent()} == {"r0", "r1", "r2", "now"}


def test_runs_in_a_loop_leave_no_thread(tmp_path):
    """Twenty runs one after another in one process, sampling on: no thread outlives them."""
    import threading

    from helpers import poll

    before = set(threading.enumerate())
    for i in range(20):
        with Monitor(tmp_path, sample_interval=0.01, run_id=f"r{i:02d}") as mon:
            with mon.phase("P00"):
                pass
    poll(lambda: set(threading.enumerate()) <= before, 10, "threads to end")
    assert [t.name for t in set(threading.enumerate()) - before] == []
    assert len(Catalog(tmp_path).summaries()) == 20


def test_eta_from_catalog_history(tmp_path):
    """The live snapshot's ETA medians come from catalogued runs: with 5 earlier runs of
    P00 (100 ms) and P01 (300 ms), a run that has done P00 expects 0.3 s left."""
    from atroz_monitor.read import state as S
    from atroz_monitor.view import history, views

    for i in range(5):
        _write_run(tmp_path, f"r{i}", 1000.0 + i, {"P00": 100.0, "P01": 300.0})
    sums = Catalog(tmp_path).summaries()
    st = S.State()
    _write_run(tmp_path, "cur", 2000.0, {"P00": 100.0}, status=None, plan=["P00", "P01"])
    from atroz_monitor.read import reader

    S.apply_all(st, reader.iter_events(tmp_path / "cur.jsonl"))
    snap = views.snapshot(st, "cur", now=2000.2, alive=True, history=sums)
    assert snap["progress"]["eta_s"] == 0.3
    assert snap["progress"]["history_runs"] == 5
    assert history.medians_s(sums, ["P01"], None) == {"P01": 0.3}


@settings(max_examples=40, deadline=None)
@given(
    hs.dictionaries(
        hs.sampled_from(["A", "B", "C", "B.sub", "é"]),
        hs.floats(min_value=0.0, max_value=1e7, allow_nan=False),
        min_size=1,
    ),
    hs.sampled_from(["completed", "failed", "cancelled", None]),
)
def test_summary_survives_the_catalog_line(durations, status):
    """Any run's summary written as a catalog line reads back equal (full part), and its
    light part keeps each key's status, counts and mean duration."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        _write_run(d, "r", 1000.0, durations, status=status)
        (s,) = catalog.summarize_files([os.path.join(d, "r.jsonl")])
    ent = {"f": "r.jsonl", "sig": [["r.jsonl", 1, 2]], "runs": [s]}
    line = catalog.encode_entry(ent)
    full = catalog.decode(line)
    assert catalog.valid_entry(full)
    assert catalog.plain(full["runs"][0]) == catalog.plain(s)
    light = catalog.decode(line, light=True)
    assert catalog.valid_entry(light)
    lp = light["runs"][0]["phases"]
    for k, ms in durations.items():
        assert lp[k]["duration_ms"] == round(ms, 3) and lp[k]["count"] == 1
    assert dict(lp.completed_ms()) == {k: round(ms, 3) for k, ms in durations.items()}


def test_crash_during_rewrite_keeps_the_old_catalog(tmp_path):
    """A rewrite killed before its rename leaves the old catalog whole and a temporary file,
    which a later refresh removes once it is an hour old."""
    _write_run(tmp_path, "r0", 1000.0, {"A": 10.0})
    Catalog(tmp_path).refresh()
    tmp = tmp_path / (catalog.FILE + ".tmp.999.dead")
    tmp.write_bytes(b"0000 half a catal")  # what a killed writer leaves
    before = catalog.reduced_logs
    assert [s["run"] for s in Catalog(tmp_path).summaries()] == ["r0"]
    assert catalog.reduced_logs == before and tmp.exists()  # too young to be judged dead
    old = time.time() - catalog.TMP_STALE_S - 10
    os.utime(tmp, (old, old))
    Catalog(tmp_path).refresh()
    assert not tmp.exists()


def test_crashed_run_counts_in_live_history(tmp_path):
    """A run that never wrote run_end and fell silent is history (interrupted), and its
    completed phases count; a run named twice (a directory given as history= too) once."""
    _write_run(tmp_path, "crashed", 1000.0, {"P00": 10.0}, status=None)
    _write_run(tmp_path, "ok", 1001.0, {"P00": 12.0})
    Catalog(tmp_path).refresh()
    mon = Monitor(tmp_path, sample_interval=None, capture=False, history=[tmp_path])
    got = {s["run"]: s["status"] for s in mon.history()}
    assert got == {"crashed": "interrupted", "ok": "completed"}


def test_growing_log_of_an_open_run_is_not_reread_on_every_refresh(tmp_path):
    """A log whose run has no run_end yet and keeps growing is read again at most once per
    open_rescan seconds, and at once when its run ends (the writer's own entry)."""
    path = _write_run(tmp_path, "live", 1000.0, {"A": 10.0}, status=None)
    cat = Catalog(tmp_path)
    cat.refresh()
    assert cat.rebuilt == 1
    with open(path, "a") as f:
        f.write(json.dumps({"ev": "log", "run": "live", "pid": 1, "seq": 50, "ts": 1001.0,
                            "level": "warning", "msg": "x"}) + "\n")  # fmt: skip
    cat.refresh()
    assert cat.rebuilt == 1  # within the window: not read again
    cat.open_rescan = 0.0
    cat.refresh()
    assert cat.rebuilt == 2
    assert cat.summary("live")["warnings"] == 1


def test_directory_without_logs_gets_no_catalog(tmp_path):
    """Reading a directory with no logs leaves nothing behind in it."""
    assert Catalog(tmp_path).summaries() == []
    assert os.listdir(tmp_path) == []


def test_unchanged_catalog_gives_the_same_summary_objects(tmp_path):
    """Two reads of an unchanged catalog give the very same summaries, interrupted runs'
    copies included (what /metrics caches its history by)."""
    _write_run(tmp_path, "crashed", 1000.0, {"P00": 10.0}, status=None)
    _write_run(tmp_path, "ok", 1001.0, {"P00": 12.0})
    cat = Catalog(tmp_path)
    a = cat.summaries(now=5000.0)
    b = cat.summaries(now=5000.0, refresh=False)
    assert [s["status"] for s in a] == ["interrupted", "completed"]
    assert [id(s) for s in a] == [id(s) for s in b]
