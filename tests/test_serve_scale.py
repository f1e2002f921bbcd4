"""serve over many logs: bounded descriptors, no select() limit, quiet files not re-read."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import pathlib
import resource
import socket
import subprocess
import sys

import pytest
from helpers import child_env, poll

from atroz_monitor import Monitor
from atroz_monitor.read import catalog
from atroz_monitor.read.reader import Follower
from atroz_monitor.store import source
from atroz_monitor.store.source import MAX_OPEN_LOGS, FileSource
from atroz_monitor.surface import server
from atroz_monitor.surface.server import start_server

ROUTES = [
    "/healthz",
    "/",
    "/api/v1/runs",
    "/api/v1/runs?limit=5",
    "/api/v1/alerts",
    "/api/v1/summary",
    "/metrics",
    "/api/v1/runs/latest",
    "/api/v1/runs/latest/phases",
    "/api/v1/phases/P00/history",
    "/api/v1/phases/P00/trends",
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """A real run's log (a two-phase Monitor run) and its run id."""
    d = tmp_path_factory.mktemp("tpl")
    m = Monitor(str(d), plan=[("P00", "load"), ("P01", "save")], sample_interval=0.05)
    with m:
        with m.phase("P00") as p:
            p.add_items(3)
        with m.phase("P01"):
            pass
    (log,) = d.glob("*.jsonl")
    return m.run_id, log.read_bytes()


def make_runs(d: pathlib.Path, template: tuple[str, bytes], n: int, start: int = 0) -> None:
    """``n`` copies of the template run under new ids."""
    rid, data = template
    old = rid.encode()
    for i in range(start, start + n):
        new = b"run-%06d" % i
        (d / f"run-{i:06d}.jsonl").write_bytes(data.replace(old, new))


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def get(port: int, path: str, timeout: float = 60) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_source_holds_at_most_64_descriptors(
    tmp_path: pathlib.Path, template: tuple[str, bytes]
) -> None:
    """A source over 300 logs (all of them just written, so all hot) holds at most
    MAX_OPEN_LOGS descriptors, as /proc/self/fd shows, and still reads every run."""
    make_runs(tmp_path, template, 300)
    before = fds()
    src = FileSource([tmp_path])
    try:
        assert len(src.run_ids()) == 300
        assert src.open_logs() <= MAX_OPEN_LOGS == 64
        assert fds() - before <= MAX_OPEN_LOGS + 2  # + the inotify descriptor
        assert src.health()["open_files"] == src.open_logs()
    finally:
        src.close()
    assert fds() == before


def test_quiet_files_release_descriptors_and_changes_still_arrive(
    tmp_path: pathlib.Path, template: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once files have been quiet for HOT_S and their runs ended, no descriptor is held and
    their runs are parked (held as summaries); an event appended to one of them later (an
    `ack`) is still read: the run is followed again."""
    monkeypatch.setattr(source, "HOT_S", 0.0)
    monkeypatch.setattr(source, "STATUS_EVERY_S", 0.0)
    make_runs(tmp_path, template, 20)
    src = FileSource([tmp_path])
    try:
        src.refresh()
        assert not (tmp_path / catalog.FILE).exists()  # parked from what was read, not a catalog
        assert src.health()["errors"] == 0
        assert src.open_logs() == 0
        assert (src.health()["parked_files"], src.live_ids()) == (20, set())
        assert src.snapshot("run-000007")["run"]["status"] == "completed"
        with open(tmp_path / "run-000007.jsonl", "ab") as f:
            f.write(
                b'{"ev":"log","ts":1.0,"run":"run-000007","pid":1,"seq":999,'
                b'"level":"warning","msg":"late"}\n'
            )
        poll(
            lambda: src.refresh() or src.view("run-000007").snap["logs"]["warnings"] == 1,
            10,
            "the appended warning",
        )
        assert src.view("run-000007").snap["logs"]["warnings"] == 1
    finally:
        src.close()


def test_changes_arrive_without_inotify(
    tmp_path: pathlib.Path, template: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without inotify, a quiet file is stat'ed in slices and an append to it is still read."""
    monkeypatch.setattr(source, "HOT_S", 0.0)
    monkeypatch.setattr(source, "STATUS_EVERY_S", 0.0)
    monkeypatch.setattr(source, "COLD_SWEEP_S", 0.0)
    monkeypatch.setattr(source, "COLD_SLICE", 4)
    monkeypatch.setattr(source.DirWatch, "ok", property(lambda self: False))
    make_runs(tmp_path, template, 20)
    src = FileSource([tmp_path])
    try:
        assert src.health()["watching"] is False
        src.refresh()
        assert src.open_logs() == 0
        with open(tmp_path / "run-000013.jsonl", "ab") as f:
            f.write(
                b'{"ev":"log","ts":1.0,"run":"run-000013","pid":1,"seq":999,'
                b'"level":"warning","msg":"late"}\n'
            )
        poll(
            lambda: src.refresh() or src.view("run-000013").snap["logs"]["warnings"] == 1,
            10,
            "the appended warning",
        )
    finally:
        src.close()


def test_replaced_log_rebuilds_only_its_runs(
    tmp_path: pathlib.Path, template: tuple[str, bytes]
) -> None:
    """A followed log (run without run_end) replaced by os.replace is re-read from its start
    while the state of the other runs stays the same objects (not rebuilt); a parked
    (finished, catalogued) log replaced the same way is followed again with its new run."""
    rid, data = template
    open_data = b"".join(x for x in data.splitlines(True) if b'"ev":"run_end"' not in x)
    for i in range(3):
        (tmp_path / f"open-{i}.jsonl").write_bytes(open_data.replace(rid.encode(), b"open-%d" % i))
    make_runs(tmp_path, template, 3)
    catalog.Catalog(tmp_path).refresh()  # as the runs' monitors would have at their ends
    src = FileSource([tmp_path])
    try:
        assert src.live_ids() == {"open-0", "open-1", "open-2"}
        assert src.health()["parked_files"] == 3
        other = src.read(lambda st: st.runs["open-1"])
        for name, new in (("open-2.jsonl", b"open-new"), ("run-000001.jsonl", b"done-new")):
            tmp = tmp_path / "x.tmp"
            tmp.write_bytes((open_data if new == b"open-new" else data).replace(rid.encode(), new))
            os.replace(tmp, tmp_path / name)
            poll(
                lambda new=new: src.refresh() or new.decode() in src.run_ids(),
                10,
                f"the replacement {name}",
            )
        assert sorted(src.run_ids()) == [
            "done-new",
            "open-0",
            "open-1",
            "open-new",
            "run-000000",
            "run-000002",
        ]
        assert src.read(lambda st: st.runs["open-1"]) is other
        assert src.snapshot("done-new")["run"]["status"] == "completed"
    finally:
        src.close()


def test_gzip_being_written_is_not_replaced_on_every_poll(tmp_path: pathlib.Path) -> None:
    """A .jsonl.gz growing in place (same inode) over 20 polls causes at most one reset, and
    once it is complete every event is read."""
    p = tmp_path / "run.jsonl.gz"
    lines = [
        b'{"ev":"log","ts":1.0,"run":"r","pid":1,"seq":%d,"level":"warning","msg":"%s"}\n'
        % (i, os.urandom(300).hex().encode())
        for i in range(400)
    ]
    raw = open(p, "wb")  # noqa: SIM115  (written across the polls below, closed after them)
    g = gzip.GzipFile(fileobj=raw, mode="wb")
    f = Follower(p)
    resets = 0
    for chunk in range(20):
        for line in lines[chunk * 20 : chunk * 20 + 20]:
            g.write(line)
        g.flush()
        raw.flush()
        reset, _ = f.poll()
        resets += reset
    g.close()
    raw.close()
    seen: list[int] = []

    def complete() -> bool:
        nonlocal resets
        reset, evs = f.poll()
        resets += reset
        if reset:
            seen.clear()
        seen.extend(e["seq"] for e in evs)
        return len(seen) == 400

    poll(complete, 15, "the finished gzip read again")
    f.close()
    assert resets <= 1
    assert seen == list(range(400))


def test_stream_works_with_descriptors_above_1024(
    tmp_path: pathlib.Path, template: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 1,100 descriptors open in the process, the SSE stream's sockets are numbered above
    1024 and the stream still delivers its snapshot and later a new run (no select())."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard descriptor limit {hard} is below 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    monkeypatch.setattr(server, "CHECK_S", 0.01)  # the client check runs between every change
    make_runs(tmp_path, template, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    filler = [os.dup(null) for _ in range(1100)]
    srv = start_server(FileSource([tmp_path]), port=0, _own_source=True)
    sock = None
    try:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
        assert sock.fileno() > 1024
        sock.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % srv.port)
        buf = b""

        def has(what: bytes) -> bool:
            nonlocal buf
            buf += sock.recv(65536)
            return what in buf

        poll(lambda: has(b"event: snapshot"), 20, "the first snapshot")
        # Every CHECK_S of quiet the pump asks the socket whether the client left (select()
        # raised ValueError for descriptors >= 1024); the next run must still arrive.
        make_runs(tmp_path, template, 1, start=1)
        poll(lambda: has(b"run-000001"), 20, "the new run on the stream")
    finally:
        if sock is not None:
            sock.close()
        srv.close()
        for fd in filler:
            os.close(fd)
        os.close(null)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


SERVE_UNDER_ULIMIT = r"""
import resource, sys, json, http.client
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from atroz_monitor.surface.server import start_server
from atroz_monitor.store.source import FileSource
srv = start_server(FileSource([sys.argv[1]]), port=0, _own_source=True)
out = {}
for path in json.loads(sys.argv[2]):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    out[path] = [r.status, len(body)]
    c.close()
import os
out["fds"] = len(os.listdir("/proc/self/fd"))
out["runs"] = srv.source.health()["runs"]
srv.close()
print(json.dumps(out))
"""


def test_serve_under_ulimit_256_with_2000_logs(
    tmp_path: pathlib.Path, template: tuple[str, bytes]
) -> None:
    """serve in a process limited to 256 descriptors, over 2,000 logs, answers every route
    with 200 and ends with fewer than 128 descriptors open."""
    make_runs(tmp_path, template, 2000)
    r = subprocess.run(
        [sys.executable, "-c", SERVE_UNDER_ULIMIT, str(tmp_path), json.dumps(ROUTES)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert {p: out[p][0] for p in ROUTES} == {p: 200 for p in ROUTES}
    assert out["runs"] == 2000
    assert out["fds"] < 128


EMBEDDED = r"""
import resource, sys, os, json, http.client
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from atroz_monitor import Monitor
m = Monitor(sys.argv[1], plan=[("P00", "load"), ("P01", "save")], sample_interval=0.05)
with m:
    srv = m.serve(port=0)
    statuses = []
    with m.phase("P00"):
        for path in ("/api/v1/runs", "/api/v1/runs/latest", "/healthz"):
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
            c.request("GET", path)
            statuses.append(c.getresponse().status)
            c.close()
        host_fds = len(os.listdir("/proc/self/fd"))  # the host's own call must work
    srv.close()
print(json.dumps({"statuses": statuses, "fds": host_fds}))
"""


def test_embedded_serve_leaves_the_host_its_descriptors(
    tmp_path: pathlib.Path, template: tuple[str, bytes]
) -> None:
    """Monitor.serve() inside a pipeline limited to 256 descriptors, in a directory of 1,100
    logs, answers, and the host's own os.listdir('/proc/self/fd') works with fewer than 128
    descriptors open."""
    make_runs(tmp_path, template, 1100)
    r = subprocess.run(
        [sys.executable, "-c", EMBEDDED, str(tmp_path)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["statuses"] == [200, 200, 200]
    assert out["fds"] < 128


def test_catalogued_finished_logs_are_not_stated_on_each_poll(
    tmp_path: pathlib.Path, template: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 200 finished, catalogued logs parked, 20 refreshes call os.stat fewer than 60
    times in all (the directory, not the logs: polling them would be 4,000), and none of
    them reads a log."""
    make_runs(tmp_path, template, 200)
    catalog.Catalog(tmp_path).refresh()
    src = FileSource([tmp_path])
    try:
        assert src.health()["parked_files"] == 200
        calls: list[str] = []
        real_stat = os.stat

        def counting_stat(path: object, *a: object, **kw: object) -> os.stat_result:
            calls.append(str(path))
            return real_stat(path, *a, **kw)  # type: ignore[arg-type]

        opened: list[str] = []
        real_open = source.Follower._open

        def counting_open(self: source.Follower) -> os.stat_result:
            opened.append(self.path)
            return real_open(self)

        monkeypatch.setattr(source.os, "stat", counting_stat)
        monkeypatch.setattr(source.Follower, "_open", counting_open)
        for _ in range(20):
            src.refresh()
        assert len(calls) < 60, calls[:10]
        assert opened == []
    finally:
        monkeypatch.undo()
        src.close()
