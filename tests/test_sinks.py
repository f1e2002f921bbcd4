"""The log writer: whole lines, counted failures, never an exception into the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from helpers import read_log

from atroz_monitor import Monitor
from atroz_monitor.sinks import LogWriter


def test_write_failure_on_dev_full_is_counted_not_raised(capsys):
    """Writing the run log to /dev/full (ENOSPC) leaves the host running; failures are
    counted, reported once on stderr, and visible in the snapshot's monitor counters."""
    with Monitor("/dev/full", sample_interval=None, run_id="full-1") as mon:
        for i in range(50):
            with mon.phase(f"P{i}") as p:
                p.add_items(1)
                p.metric("m", i)
        health = mon.main.health()
    assert health["write_errors"] >= 100
    assert health["events_lost"] == health["write_errors"]
    assert health["events_written"] == 0
    assert "No space left on device" in health["last_write_error"]
    err = capsys.readouterr().err
    assert err.count("cannot write to /dev/full") == 1


def test_file_size_limit_is_counted_not_raised(tmp_path):
    """RLIMIT_FSIZE reached mid-run (EFBIG): the pipeline completes, losses are counted,
    every line that was written is whole."""
    log = tmp_path / "run.jsonl"
    code = textwrap.dedent(
        f"""
        import resource, signal, json
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        from atroz_monitor import Monitor
        with Monitor({str(log)!r}, sample_interval=None) as mon:
            for i in range(1000):
                with mon.phase("P" + str(i)):
                    pass
            h = mon.main.health()
        print(json.dumps(h))
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    health = json.loads(r.stdout.strip().splitlines()[-1])
    assert health["write_errors"] > 0
    assert os.path.getsize(log) <= 20_000
    data = log.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    for line in whole.splitlines():
        json.loads(line)
    assert health["events_written"] == len(whole.splitlines())


def test_lines_are_ascii_and_survive_hostile_strings(tmp_path):
    """Names and messages with newlines, quotes, </script>, non-ASCII and lone surrogates
    keep every event on one parseable line."""
    log = tmp_path / "run.jsonl"
    hostile = 'a\nb"c</script>\u2028\ud800é\x00'
    with Monitor(log, sample_interval=None, meta={"m": hostile, "obj": object()}) as mon:
        with mon.phase(hostile, name=hostile) as p:
            p.warning(hostile)
            p.metric(hostile, 1)
    raw = log.read_bytes()
    assert raw.isascii()
    evs = read_log(log)
    assert evs[0]["meta"]["m"] == hostile
    assert evs[0]["meta"]["obj"].startswith("<object object")
    names = {e.get("phase") for e in evs if e["ev"] in ("phase_start", "phase_end")}
    assert names == {hostile}


def test_writer_after_close_counts_instead_of_raising(tmp_path):
    """Emitting on a closed writer returns 0 and counts the loss."""
    w = LogWriter(tmp_path / "x.jsonl", "r")
    assert w.emit("metric", 1.0, ',"name":"a","value":1') == 1
    w.close()
    assert w.emit("metric", 1.0, ',"name":"a","value":2') == 0
    assert w.write_errors == 1 and w.lost == 1 and w.written == 1


def test_unserialisable_metadata_falls_back_to_repr(tmp_path):
    """Metadata JSON cannot encode (sets, objects, NaN, cycles) is written via repr/null."""
    log = tmp_path / "run.jsonl"
    cyc: list = []
    cyc.append(cyc)
    meta = {"s": {1}, "nan": float("nan"), "cyc": cyc}
    with Monitor(log, sample_interval=None, meta=meta):
        pass
    start = read_log(log)[0]
    assert start["meta"]["s"] == [1]
    assert start["meta"]["nan"] is None
    assert isinstance(start["meta"]["cyc"], (str, list))
