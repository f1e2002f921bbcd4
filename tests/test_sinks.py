"""The log writer: whole lines, counted failures, never an exception into the host."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from helpers import read_log

from atroz_monitor import Monitor
from atroz_monitor.record import sinks
from atroz_monitor.record.sinks import LogWriter


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


PAD = "x" * 80


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_file_mode_and_dir_mode_options_are_applied(tmp_path):
    """file_mode=0o640 and dir_mode=0o750 give exactly those modes under umask 022; the
    defaults are 0600 and 0700."""
    old = os.umask(0o022)
    try:
        with Monitor(tmp_path / "a", sample_interval=None, run_id="r") as m1:
            pass
        with Monitor(
            tmp_path / "b", sample_interval=None, run_id="r", file_mode=0o640, dir_mode=0o750
        ) as m2:
            pass
    finally:
        os.umask(old)
    assert (_mode(tmp_path / "a"), _mode(m1.main.path)) == (0o700, 0o600)
    assert (_mode(tmp_path / "b"), _mode(m2.main.path)) == (0o750, 0o640)


def test_a_stricter_umask_wins_over_the_modes_asked(tmp_path):
    """Under umask 077, file_mode=0o644 and dir_mode=0o755 still give 0600 and 0700."""
    code = textwrap.dedent(
        f"""
        import os
        os.umask(0o077)
        from atroz_monitor import Monitor
        with Monitor({str(tmp_path / "d")!r}, sample_interval=None, run_id="r",
                     file_mode=0o644, dir_mode=0o755) as mon:
            pass
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (_mode(tmp_path / "d"), _mode(tmp_path / "d" / "r.jsonl")) == (0o700, 0o600)


@pytest.mark.parametrize("kw", [{"file_mode": 0o400}, {"dir_mode": 0o600}, {"file_mode": 0o1600},
                                {"file_mode": "600"}, {"dir_mode": True}])  # fmt: skip
def test_bad_modes_fail_at_construction(tmp_path, kw):
    """A mode the monitor could not write through, or not permission bits, is a
    ValueError at construction."""
    with pytest.raises(ValueError, match="must be permission bits"):
        Monitor(tmp_path / "x.jsonl", sample_interval=None, **kw)


def test_a_hard_linked_log_is_refused(tmp_path):
    """A log path with a second hard link (which may be another file's name) is refused
    with the reason; trust_dir=True accepts it."""
    other = tmp_path / "other"
    other.write_bytes(b"")
    os.link(other, tmp_path / "run.jsonl")
    with pytest.raises(PermissionError, match="2 hard links"):
        Monitor(tmp_path / "run.jsonl", sample_interval=None)
    assert other.read_bytes() == b""
    with Monitor(tmp_path / "run.jsonl", sample_interval=None, trust_dir=True):
        pass
    assert read_log(other)[-1]["ev"] == "run_end"


def test_rotation_skips_names_already_taken(tmp_path):
    """Rotation parts are new files (O_EXCL): a name already taken is skipped, left as it
    was, and writing goes on in the next free part, nothing lost."""
    base = tmp_path / "run.jsonl"
    (tmp_path / "run.part2.jsonl").write_bytes(b"not mine\n")
    w = LogWriter(base, "r", max_bytes=4096)
    for i in range(60):
        assert w.emit("metric", 1.0, f',"name":"m","value":{i},"pad":"{PAD}"') > 0
    w.close()
    assert (tmp_path / "run.part2.jsonl").read_bytes() == b"not mine\n"
    assert w.part >= 3 and w.lost == 0 and w.write_errors == 0
    got = read_log(base) + [e for n in range(3, w.part + 1)
                            for e in read_log(tmp_path / f"run.part{n}.jsonl")]  # fmt: skip
    assert [e["value"] for e in got] == list(range(60))


def test_rotation_gives_up_after_max_part_skips_and_counts_it(tmp_path):
    """With the next MAX_PART_SKIPS names all taken, rotation stops (counted once) and the
    writer goes on in the current part: no event lost, nothing raised."""
    base = tmp_path / "run.jsonl"
    for n in range(2, 2 + sinks.MAX_PART_SKIPS + 1):
        (tmp_path / f"run.part{n}.jsonl").write_bytes(b"")
    w = LogWriter(base, "r", max_bytes=4096)
    for i in range(60):
        w.emit("metric", 1.0, f',"name":"m","value":{i},"pad":"{PAD}"')
    w.close()
    assert w.part == 1 and w.write_errors == 1 and w.lost == 0
    assert "File exists" in (w.last_error or "")
    assert [e["value"] for e in read_log(base)] == list(range(60))


def test_a_later_run_through_a_planted_link_is_counted_not_raised(tmp_path):
    """A run started after construction (``lenient``) whose log name is a symlink writes
    nothing through it and counts every event as lost, never raising."""
    target = tmp_path / "target"
    os.symlink(target, tmp_path / "later.jsonl")
    w = LogWriter(tmp_path / "later.jsonl", "later", lenient=True)
    assert w.emit("metric", 1.0, ',"name":"m","value":1') == 0
    assert w.lost == 1 and "symbolic link" in (w.last_error or "")
    assert not target.exists()


class _Held:
    """A holder of a deferred line, as a phase is to the writer."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pending = True

    def deferred_line(self):
        return b'{"ev":"s","ts":%s%06d,%s%d,"n":%d}\n', b"1.", 5, (self.n,)


_PLAIN = b'{"ev":"e","ts":%s%06d,%s%d,"n":%d%.0s}\n'
_WHOLE = b'{"ev":"e","ts":%s%06d,%s%d,"n":%d,"whole":%s}\n'


def test_emit_end_stands_for_a_start_never_written(tmp_path):
    """emit_end formats ``whole`` while the holder's start line is unwritten, ``fmt`` (which
    drops the start's arguments) once emit_deferred wrote it; seqs follow the file order."""
    w = LogWriter(tmp_path / "w.jsonl", "r")
    a, b = _Held(1), _Held(2)
    w.emit_end(a, _PLAIN, _WHOLE, b"2.", 7, (1, b"true"))
    w.emit_deferred(b)
    w.emit_deferred(b)  # written once
    w.emit_end(b, _PLAIN, _WHOLE, b"3.", 8, (2, b"true"))
    w.close()
    evs = read_log(tmp_path / "w.jsonl")
    assert [(e["ev"], e["n"], e.get("whole"), e["seq"]) for e in evs] == [
        ("e", 1, True, 1), ("s", 2, None, 2), ("e", 2, None, 3)
    ]  # fmt: skip
    assert evs[0]["ts"] == 2.000007 and evs[1]["ts"] == 1.000005
    assert not a.pending and not b.pending


def test_a_start_line_and_its_end_race_to_exactly_one_start(tmp_path):
    """A sampler thread writing deferred start lines while phases end in other threads:
    every phase has exactly one start, as its own line before its end or inside its end."""
    import threading

    w = LogWriter(tmp_path / "w.jsonl", "r")
    held = [_Held(i) for i in range(3000)]
    go = threading.Event()

    def sampler() -> None:
        go.wait()
        for h in held:
            w.emit_deferred(h)

    def ender(part: list[_Held]) -> None:
        go.wait()
        for h in part:
            w.emit_end(h, _PLAIN, _WHOLE, b"2.", 0, (h.n, b"true"))

    ts = [threading.Thread(target=sampler)]
    ts += [threading.Thread(target=ender, args=(held[k::2],)) for k in range(2)]
    for t in ts:
        t.start()
    go.set()
    for t in ts:
        t.join(60)
    w.close()
    evs = read_log(tmp_path / "w.jsonl")
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    starts, ends = {}, {}
    for i, e in enumerate(evs):
        (starts if e["ev"] == "s" else ends)[e["n"]] = (i, e)
    assert sorted(ends) == list(range(3000))
    for n, (i, e) in ends.items():
        if e.get("whole"):
            assert n not in starts
        else:
            assert starts[n][0] < i


def test_an_end_line_after_release_reopens_the_log(tmp_path):
    """A writer released at its run's end (descriptor closed) reopens the file for a later
    end line: its inline write does not take the closed descriptor for a failure."""
    w = LogWriter(tmp_path / "w.jsonl", "r")
    w.emit("run_end", 1.0)
    w.release()
    w.emit_end(_Held(9), _PLAIN, _WHOLE, b"2.", 0, (9, b"true"))
    w.close()
    assert [e["ev"] for e in read_log(tmp_path / "w.jsonl")] == ["run_end", "e"]
    assert (w.lost, w.write_errors) == (0, 0)
