"""api.route and api.Stream without sockets, over logs written by a real Monitor."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from atroz_monitor import Monitor
from atroz_monitor.store.source import FileSource
from atroz_monitor.surface import api


def append(path: str | os.PathLike[str], *events: dict[str, Any]) -> None:
    """Append raw event lines (as another writer would)."""
    with open(path, "a", encoding="ascii") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")


def build_runs(tmp_path: Path) -> Path:
    """Two runs in one directory: r1 (older, all fine) and r2 (a failed phase, an error,
    ten samples, two alerts, a control-character warning)."""
    d = tmp_path / "runs"
    plan = [("P00", "Load"), ("P01", "Parse")]
    art = tmp_path / "out.bin"
    art.write_bytes(b"x" * 100)
    with Monitor(
        d, plan=plan, sample_interval=None, run_id="r1", capture=False, alert_rules=[]
    ) as m:
        with m.phase("P00") as p:
            p.add_items(5)
            p.artifact(art)
            with m.phase("P00.a", "Sub A"):
                pass
        with m.phase("P01") as p:
            p.warning("careful")
    time.sleep(0.002)  # r2 must start strictly after r1
    with Monitor(
        d, plan=plan, sample_interval=None, run_id="r2", capture=False, alert_rules=[]
    ) as m:
        with m.phase("P00") as p:
            p.error("bad thing")
            p.metric("m", 3)
            p.warning("ctrl \x1b[31m red \u2028 </script>")
            with m.phase("P00.a", "Sub A"), m.phase("P00.a.x", "Deep"):
                pass
        try:
            with m.phase("P01"):
                raise ValueError("boom")
        except ValueError:
            pass
        log = m.main.path
    t = time.time()
    append(
        log,
        *(
            {
                "ev": "sample",
                "ts": t + i,
                "run": "r2",
                "pid": 1,
                "cpu_pct": float(i),
                "rss_bytes": 1000 + i,
                "spans": [],
            }
            for i in range(10)
        ),
        {
            "ev": "alert",
            "ts": t,
            "run": "r2",
            "alert": "a1",
            "rule": "slow",
            "severity": "warning",
            "state": "raised",
            "msg": "P00 slow",
        },
        {
            "ev": "alert",
            "ts": t,
            "run": "r2",
            "alert": "a2",
            "rule": "mem",
            "severity": "critical",
            "state": "raised",
        },
        {"ev": "alert", "ts": t + 1, "run": "r2", "alert": "a2", "state": "resolved"},
    )
    return d


@pytest.fixture
def src(tmp_path: Path) -> Any:
    s = FileSource([build_runs(tmp_path)])
    yield s
    s.close()


def get(source: Any, path: str, query: str = "", method: str = "GET", **headers: str) -> Any:
    resp = api.route(source, method, path, query, {k.lower(): v for k, v in headers.items()})
    return resp


def body(resp: api.Response) -> Any:
    return json.loads(resp.body)


def hdr(resp: api.Response, name: str) -> str | None:
    return next((v for k, v in resp.headers if k.lower() == name.lower()), None)


def test_runs_lists_newest_first_with_progress(src: Any) -> None:
    """/api/v1/runs: r2 before r1, each with status, progress and open alert count."""
    runs = body(get(src, "/api/v1/runs"))["runs"]
    assert [r["id"] for r in runs] == ["r2", "r1"]
    assert runs[1]["status"] == "completed"
    assert runs[1]["progress"] == {"planned": 2, "done": 2, "pct": 100.0}
    assert runs[0]["alerts_open"] == 1
    assert set(runs[0]) >= {"id", "name", "status", "start", "end", "duration_ms", "host"}


def test_snapshot_latest_is_newest_run(src: Any) -> None:
    """/api/v1/runs/latest is r2's snapshot, the same bytes as /api/v1/runs/r2."""
    latest = get(src, "/api/v1/runs/latest")
    assert body(latest)["run"]["id"] == "r2"
    assert latest.body == get(src, "/api/v1/runs/r2").body
    assert hdr(latest, "Content-Type") == "application/json; charset=utf-8"
    assert hdr(latest, "Cache-Control") == "no-store"


def test_unknown_run_route_and_phase_are_404_json(src: Any) -> None:
    """Unknown run, route and phase: 404 with a JSON error naming them."""
    r = get(src, "/api/v1/runs/nope")
    assert r.status == 404 and body(r)["error"] == "no run 'nope'"
    assert get(src, "/api/v1/runs/r1/bogus").status == 404
    assert get(src, "/api/v2/runs").status == 404
    r = get(src, "/api/v1/runs/r1/phases/P99")
    assert r.status == 404 and "P99" in body(r)["error"]


def test_progress_is_lightweight(src: Any) -> None:
    """/progress has run, status, progress, flow and duration only."""
    p = body(get(src, "/api/v1/runs/r1/progress"))
    assert set(p) == {"run", "status", "progress", "flow", "duration_ms"}
    assert [f["status"] for f in p["flow"]] == ["completed", "completed"]
    assert p["progress"]["done"] == 2


def test_phase_filters(src: Any) -> None:
    """/phases filters by status, parent (span or none) and depth."""
    all_ = body(get(src, "/api/v1/runs/r2/phases"))["phases"]
    assert [p["phase"] for p in all_] == ["P00", "P00.a", "P00.a.x", "P01"]
    failed = body(get(src, "/api/v1/runs/r2/phases", "status=failed"))["phases"]
    assert [p["phase"] for p in failed] == ["P01"]
    both = body(get(src, "/api/v1/runs/r2/phases", "status=failed,completed"))["phases"]
    assert len(both) == 4
    top = body(get(src, "/api/v1/runs/r2/phases", "parent=none"))["phases"]
    assert [p["phase"] for p in top] == ["P00", "P01"]
    p00 = all_[0]["span"]
    kids = body(get(src, "/api/v1/runs/r2/phases", f"parent={p00}"))["phases"]
    assert [p["phase"] for p in kids] == ["P00.a"]
    deep = body(get(src, "/api/v1/runs/r2/phases", "depth=2"))["phases"]
    assert [p["phase"] for p in deep] == ["P00.a.x"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("status=bogus", "status"),
        ("depth=-1", "depth"),
        ("depth=x", "depth"),
        ("parent=9.9", "parent"),
    ],
)
def test_bad_phase_filters_are_400_naming_the_parameter(src: Any, query: str, param: str) -> None:
    """A bad filter value is a 400 whose error starts with the parameter's name."""
    r = get(src, "/api/v1/runs/r2/phases", query)
    assert r.status == 400
    assert body(r)["error"].startswith(param + ":")


def test_phase_by_span_or_key_and_sub_phases(src: Any) -> None:
    """/phases/{span} and /phases/{key} find the same record; /sub-phases lists descendants."""
    by_key = body(get(src, "/api/v1/runs/r2/phases/P00"))
    by_span = body(get(src, f"/api/v1/runs/r2/phases/{by_key['span']}"))
    assert by_key == by_span and by_key["metrics"] == {"m": 3}
    sub = body(get(src, "/api/v1/runs/r2/phases/P00/sub-phases"))
    assert [p["phase"] for p in sub["phases"]] == ["P00.a", "P00.a.x"]
    assert sub["span"] == by_key["span"]


def test_resources_since_and_step(src: Any) -> None:
    """/resources returns samples from an absolute index, downsampled on the index grid."""
    r = body(get(src, "/api/v1/runs/r2/resources"))
    assert len(r["samples"]) == 10 and r["next"] == 10 and r["dropped"] == 0
    inc = body(get(src, "/api/v1/runs/r2/resources", "since=7"))
    assert [s["cpu_pct"] for s in inc["samples"]] == [7.0, 8.0, 9.0]
    assert inc["first"] == 7
    step = body(get(src, "/api/v1/runs/r2/resources", "since=1&step=3"))
    assert [s["cpu_pct"] for s in step["samples"]] == [3.0, 6.0, 9.0]
    assert body(get(src, "/api/v1/runs/r2/resources", "since=10"))["samples"] == []
    assert get(src, "/api/v1/runs/r2/resources", "step=0").status == 400
    assert body(get(src, "/api/v1/runs/r2/resources", "since=z"))["error"].startswith("since:")


def test_errors_and_warnings(src: Any) -> None:
    """/errors has the error log and the failed phase's exception, both in its count (the
    snapshot's one count); /warnings the warnings."""
    e = body(get(src, "/api/v1/runs/r2/errors"))
    assert [x["msg"] for x in e["errors"]] == ["bad thing"]
    assert e["count"] == 2
    assert [(f["phase"], f["error"]["type"]) for f in e["failed_phases"]] == [("P01", "ValueError")]
    w = body(get(src, "/api/v1/runs/r1/warnings"))
    assert [x["msg"] for x in w["warnings"]] == ["careful"] and w["count"] == 1


def test_control_characters_are_escaped(src: Any) -> None:
    """A log message with ESC, U+2028 and </script> is sent as ASCII JSON escapes."""
    raw = get(src, "/api/v1/runs/r2/warnings").body
    assert b"\\u001b[31m" in raw and b"\\u2028" in raw
    assert b"\x1b" not in raw
    assert all(b < 128 for b in raw)


def test_artifacts_grouped_by_phase(src: Any) -> None:
    """/artifacts groups the run's artifacts under the phase that produced them (named by
    the plan, the phase having no name of its own)."""
    a = body(get(src, "/api/v1/runs/r1/artifacts"))
    assert a["total"] == 1
    (g,) = a["phases"]
    assert (g["phase"], g["name"], g["bytes"]) == ("P00", "Load", 100)
    assert g["artifacts"][0]["path"].endswith("out.bin")


def test_alerts_per_run_and_across_runs(src: Any) -> None:
    """/runs/{run}/alerts and /api/v1/alerts filter by severity and state (open = not
    resolved)."""
    a = body(get(src, "/api/v1/runs/r2/alerts"))["alerts"]
    assert sorted(x["alert"] for x in a) == ["a1", "a2"]
    crit = body(get(src, "/api/v1/runs/r2/alerts", "severity=critical"))["alerts"]
    assert [x["alert"] for x in crit] == ["a2"]
    open_ = body(get(src, "/api/v1/alerts", "state=open"))["alerts"]
    assert [(x["run"], x["alert"]) for x in open_] == [("r2", "a1")]
    assert body(get(src, "/api/v1/alerts", "state=resolved"))["alerts"][0]["alert"] == "a2"
    r = get(src, "/api/v1/alerts", "severity=loud")
    assert r.status == 400 and body(r)["error"].startswith("severity:")


def test_history_and_trends(src: Any) -> None:
    """Per-key history lists both runs; trends report the run count; unknown key is 404."""
    h = body(get(src, "/api/v1/phases/P00/history"))
    assert [r["run"] for r in h["runs"]] == ["r1", "r2"]
    assert h["count"] == 2
    t = body(get(src, "/api/v1/phases/P00/trends"))
    assert t["phase"] == "P00" and t["runs"] == 2
    assert get(src, "/api/v1/phases/P77/history").status == 404
    assert get(src, "/api/v1/phases/P00/history", "limit=0").status == 400


def test_summary_counts_runs_and_alerts(src: Any) -> None:
    """/summary counts both runs as completed and one open warning alert."""
    s = body(get(src, "/api/v1/summary"))
    assert s["runs"]["total"] == 2 and s["runs"]["completed"] == 2
    assert s["alerts"]["open"] == 1 and s["alerts"]["warning"] == 1
    assert s["phases"]["P00"]["count"] == 2


def test_export_is_an_attachment_with_history(src: Any) -> None:
    """/export: one document with the snapshot and the history of each phase key."""
    r = get(src, "/api/v1/runs/r2/export")
    assert hdr(r, "Content-Disposition") == 'attachment; filename="r2.json"'
    doc = body(r)
    assert doc["snapshot"]["run"]["id"] == "r2"
    assert [row["run"] for row in doc["history"]["P00"]["runs"]] == ["r1"]


def test_healthz(src: Any) -> None:
    """/healthz says ok and counts the runs."""
    h = body(get(src, "/healthz"))
    assert h["status"] == "ok" and h["runs"] == 2 and h["unavailable"] == 0


def test_static_assets_only_from_the_package(src: Any) -> None:
    """The page, its assets and favicon are served with exact types; traversal is 404."""
    page = get(src, "/")
    assert page.status == 200 and hdr(page, "Content-Type") == "text/html; charset=utf-8"
    assert hdr(get(src, "/favicon.svg"), "Content-Type") == "image/svg+xml"
    js = get(src, "/static/app.js")
    assert hdr(js, "Content-Type") == "text/javascript; charset=utf-8"
    assert get(src, "/static/app.js", **{"If-None-Match": hdr(js, "ETag") or ""}).status == 304
    for bad in (
        "/static/../api.py",
        "/static/%2e%2e/api.py",
        "/static/.hidden.js",
        "/static/..%2fapi.py",
        "/static/nope.js",
        "/static/api.py",
    ):
        assert get(src, bad).status == 404, bad


def test_non_get_is_405_with_allow(src: Any) -> None:
    """POST, PUT and DELETE are 405 with Allow: GET, HEAD."""
    for m in ("POST", "PUT", "DELETE", "OPTIONS"):
        r = get(src, "/api/v1/runs", method=m)
        assert r.status == 405 and hdr(r, "Allow") == "GET, HEAD"


def test_head_is_get_without_body(src: Any) -> None:
    """HEAD has GET's status and Content-Length and an empty body."""
    g = get(src, "/api/v1/runs/r2")
    h = get(src, "/api/v1/runs/r2", method="HEAD")
    assert h.status == 200 and h.body == b""
    assert hdr(h, "Content-Length") == str(len(g.body))


def test_security_headers_on_every_response(src: Any) -> None:
    """200, 404, 400, 405 and static responses all carry the security headers, no CORS."""
    for r in (
        get(src, "/api/v1/runs"),
        get(src, "/x"),
        get(src, "/api/v1/alerts", "state=x"),
        get(src, "/", method="POST"),
        get(src, "/static/style.css"),
    ):
        assert hdr(r, "Content-Security-Policy") == "default-src 'self'"
        assert hdr(r, "X-Content-Type-Options") == "nosniff"
        assert hdr(r, "X-Frame-Options") == "DENY"
        assert hdr(r, "Referrer-Policy") == "no-referrer"
        assert not any(k.lower().startswith("access-control") for k, _ in r.headers)


def _messages(data: bytes) -> list[tuple[str, int, Any]]:
    out = []
    for block in data.decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "event" in fields:
            out.append((fields["event"], int(fields["id"]), json.loads(fields["data"])))
    return out


def test_stream_snapshot_then_update_with_only_what_changed(tmp_path: Path) -> None:
    """A Stream sends a snapshot, then an update with the new phase, sample and log only."""
    log = tmp_path / "live.jsonl"
    t = time.time()
    append(
        log,
        {"ev": "run_start", "ts": t, "run": "L", "pid": 1, "plan": [{"id": "A"}]},
        {"ev": "phase_start", "ts": t, "run": "L", "pid": 1, "span": "1.1", "phase": "A"},
        {"ev": "sample", "ts": t, "run": "L", "pid": 1, "cpu_pct": 1.0, "spans": ["1.1"]},
    )
    src = FileSource([log])
    try:
        s = api.Stream(src, "run=L", {})
        assert s.open() is None
        (snap, runs) = _messages(s.poll())
        assert snap[0] == "snapshot" and snap[2]["run"]["id"] == "L"
        assert runs[0] == "runs" and runs[2]["runs"][0]["id"] == "L"
        assert s.poll() == b""
        append(
            log,
            {
                "ev": "phase_start",
                "ts": t + 1,
                "run": "L",
                "pid": 1,
                "span": "1.2",
                "phase": "B",
                "parent": "1.1",
            },
            {"ev": "sample", "ts": t + 1, "run": "L", "pid": 1, "cpu_pct": 2.0, "spans": []},
            {"ev": "log", "ts": t + 1, "run": "L", "pid": 1, "level": "warning", "msg": "w"},
        )
        assert src.refresh()
        (upd,) = _messages(s.poll())
        assert upd[0] == "update" and upd[1] == src.version
        assert [p["span"] for p in upd[2]["phases"]] == ["1.2"]
        assert [x["cpu_pct"] for x in upd[2]["samples"]] == [2.0]
        assert [x["msg"] for x in upd[2]["logs"]] == ["w"]
        assert upd[2]["run_info"]["status"] == "running"
        assert set(upd[2]) == {
            "run",
            "run_info",
            "progress",
            "flow",
            "phases",
            "samples",
            "logs",
            "alerts",
            "alerts_open",
            "error_groups",
            "counters",
            "folded",
            "aggregates",
            "attempts",
            "quality",
            "monitor",
            "keys",
            "processes",
            "resources",
            "log_counts",
            "errors",
            "artifacts",
            "metrics",
            "anomalies",
        }
        assert (upd[2]["resources"]["total"], upd[2]["log_counts"]["warnings"]) == (2, 1)
        assert "samples" not in upd[2]["resources"] and "items" not in upd[2]["log_counts"]
    finally:
        src.close()


def test_stream_sends_an_update_for_any_event_of_the_run(tmp_path: Path) -> None:
    """An alert, a worker's process_end and a failed phase's end, with no sample or log
    beside them, each reach the client at once: the update carries the alert, the process's
    end and the error count a reload would show."""
    log = tmp_path / "live.jsonl"
    t = time.time()
    append(
        log,
        {"ev": "run_start", "ts": t, "run": "L", "pid": 1},
        {"ev": "process_start", "ts": t, "run": "L", "pid": 7, "ppid": 1},
        {"ev": "phase_start", "ts": t, "run": "L", "pid": 1, "span": "1.1", "phase": "A"},
    )
    src = FileSource([log])
    try:
        s = api.Stream(src, "run=L", {})
        _messages(s.poll())
        append(log, {"ev": "alert", "ts": t + 1, "run": "L", "pid": 1, "alert": "x:run:1",
                     "rule": "x", "severity": "warning", "state": "raised"})  # fmt: skip
        assert src.refresh()
        (upd,) = _messages(s.poll())
        assert [a["alert"] for a in upd[2]["alerts"]] == ["x:run:1"]
        append(log, {"ev": "process_end", "ts": t + 2, "run": "L", "pid": 7, "status": "ok"})
        assert src.refresh()
        (upd,) = _messages(s.poll())
        assert [(p["pid"], p.get("end")) for p in upd[2]["processes"]] == [(1, None), (7, t + 2)]
        err = {"type": "E", "msg": "m"}
        append(log, {"ev": "phase_end", "ts": t + 3, "run": "L", "pid": 1, "span": "1.1",
                     "phase": "A", "status": "failed", "error": err})  # fmt: skip
        assert src.refresh()
        (upd,) = _messages(s.poll())
        assert upd[2]["errors"]["count"] == 1
        assert [x["span"] for x in upd[2]["errors"]["exceptions"]] == ["1.1"]
    finally:
        src.close()


def test_stream_resume_from_last_event_id(tmp_path: Path) -> None:
    """Last-Event-ID within the delta ring resumes with an update; an unknown id gets a
    snapshot; an unknown run is a 404."""
    log = tmp_path / "live.jsonl"
    t = time.time()
    append(log, {"ev": "run_start", "ts": t, "run": "L", "pid": 1})
    src = FileSource([log])
    try:
        v0 = src.version
        append(
            log, {"ev": "phase_start", "ts": t, "run": "L", "pid": 1, "span": "1.1", "phase": "A"}
        )
        src.refresh()
        s = api.Stream(src, "run=latest", {"last-event-id": str(v0)})
        (upd, _runs) = _messages(s.poll())
        assert upd[0] == "update" and [p["span"] for p in upd[2]["phases"]] == ["1.1"]
        s2 = api.Stream(src, "run=L", {"last-event-id": "12"})
        assert _messages(s2.poll())[0][0] == "snapshot"
        bad = api.Stream(src, "run=nope", {}).open()
        assert bad is not None and bad.status == 404
    finally:
        src.close()


def test_static_traversal_to_a_served_type_outside_the_package_is_404(
    src: Any, tmp_path: Path
) -> None:
    """`..` segments toward a file of a served type (.js) outside the package are refused,
    plain or percent-encoded: the name check, not the type check, keeps them out."""
    import urllib.parse

    secret = tmp_path / "secret.js"
    secret.write_text("const SECRET = 'do-not-serve';\n")
    static = Path(api.__file__).resolve().parent / "static"
    rel = os.path.relpath(secret, static)
    assert rel.startswith("..") and rel.endswith("secret.js")
    for path in ("/static/" + rel, "/static/" + urllib.parse.quote(rel, safe="")):
        resp = get(src, path)
        assert resp.status == 404 and b"do-not-serve" not in resp.body, path
