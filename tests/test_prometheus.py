"""Prometheus exposition: promtool, a strict OpenMetrics parser, `/metrics`, and a real
Prometheus server scraping a served demo run."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest
from conftest import require_tool

from atroz_monitor.commands import report
from atroz_monitor.read.state import State, apply
from atroz_monitor.store import source
from atroz_monitor.surface import api, prometheus, server
from atroz_monitor.view import views

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALING = os.path.join(ROOT, "docs", "SCALING.md")
OM_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)  # what Prometheus 2.x sends when it scrapes


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A completed demo run, then a failed one (the latest of the pipeline), in one
    directory."""
    base = tmp_path_factory.mktemp("runs")
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("ATROZ_MONITOR_LOG", None)
    env.pop("ATROZ_MONITOR_RUN", None)
    cmd = [sys.executable, "-m", "atroz_monitor", "demo", "--no-serve", "--out", str(base)]
    ok = subprocess.run([*cmd, "--duration", "1"], env=env, stdout=subprocess.DEVNULL,
                        timeout=60)  # fmt: skip
    failed = subprocess.run([*cmd, "--duration", "1", "--fail", "P07"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            timeout=60)  # fmt: skip
    assert (ok.returncode, failed.returncode) == (0, 1)
    return base


def _text(logs: Any, openmetrics: bool = False) -> str:
    st, _, _ = report.load([str(logs)])
    return prometheus.prometheus(st, now=time.time(), openmetrics=openmetrics)


def _promtool(text: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("promtool")
    return subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


def _samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_promtool_accepts_the_text_format(logs: Any) -> None:
    """`promtool check metrics` finds nothing to say about the 0.0.4 exposition of two runs."""
    text = _text(logs)
    r = _promtool(text)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert text.count("# TYPE atroz_phase_duration_seconds histogram") == 1


def test_openmetrics_parses_strictly(logs: Any) -> None:
    """The OpenMetrics output ends with # EOF, names counter families without _total, and
    prometheus_client's strict OpenMetrics parser reads every family. (promtool 2.42 parses
    0.0.4 only; the real-Prometheus test below scrapes OpenMetrics too.)"""
    parser = pytest.importorskip("prometheus_client.openmetrics.parser")
    text = _text(logs, openmetrics=True)
    assert text.endswith("\n# EOF\n")
    assert "# TYPE atroz_phases counter" in text and "# TYPE atroz_run info" in text
    fams = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert fams["atroz_phases"].type == "counter"
    assert fams["atroz_phase_duration_seconds"].type == "histogram"
    assert fams["atroz_run"].type == "info"
    failed = [
        s
        for s in fams["atroz_phases"].samples
        if s.labels["status"] == "failed" and s.labels["phase"] == "P07"
    ]
    assert [s.value for s in failed] == [1]  # the latest run only: the failed one
    hist = fams["atroz_history_phase_duration_seconds"]
    assert hist.type == "histogram"
    counts = [s for s in hist.samples if s.name.endswith("_count") and s.labels["phase"] == "P07"]
    assert [s.value for s in counts] == [1]  # P07 completed in the earlier run only


def test_families_cover_runs_phases_resources_alerts_and_health(logs: Any) -> None:
    """The latest run of the pipeline (the failed one) has its info, progress, phase
    histograms, outcomes, process CPU and RSS, alert and health series; the earlier run
    has no run-labelled series and counts in the pipeline's history families."""
    text = _text(logs)
    s = _samples(text)
    runs = re.findall(r'atroz_run_info\{run="([^"]+)",name="demo: document analysis",'
                      r'status="(\w+)",host="[^"]*"\} 1', text)  # fmt: skip
    assert [st for _, st in runs] == ["failed"]
    failed = runs[0][0]
    assert s[f'atroz_phases_total{{run="{failed}",phase="P07",status="failed"}}'] == 1
    assert s[f'atroz_run_progress_ratio{{run="{failed}"}}'] == 0.8  # P08, P09 never ran
    assert s[f'atroz_phase_duration_seconds_count{{run="{failed}",phase="P03.worker"}}'] == 4
    inf = s[f'atroz_phase_duration_seconds_bucket{{run="{failed}",phase="P03.worker",le="+Inf"}}']
    assert inf == 4
    for family in (
        "atroz_process_cpu_seconds_total",
        "atroz_process_resident_memory_bytes",
        "atroz_children_cpu_seconds_total",
        "atroz_children_resident_memory_bytes",
        "atroz_monitor_events_written_total",
        "atroz_monitor_write_errors_total",
        "atroz_monitor_events_lost_total",
        "atroz_monitor_samples_missed_total",
    ):
        assert re.search(rf'^{family}\{{run="{failed}"', text, re.M), family
    latest: dict[str, dict[str, Any]] = {}  # each alert's last event, from the log itself
    for f in os.listdir(logs):
        if f.endswith(".jsonl"):
            with open(os.path.join(logs, f), encoding="utf-8") as fh:
                for ev in map(json.loads, fh):
                    if ev["ev"] == "alert" and ev["run"] == failed:
                        latest[ev["alert"]] = {**latest.get(ev["alert"], {}), **ev}
    for sev in ("info", "warning", "critical"):
        want = sum(
            1
            for a in latest.values()
            if a["state"] in ("raised", "acknowledged") and a["severity"] == sev
        )
        assert s[f'atroz_alerts_open{{run="{failed}",severity="{sev}"}}'] == want
    assert len(set(re.findall(r'run="([^"]+)"', text))) == 1
    pipe = 'pipeline="demo: document analysis"'
    assert s[f'atroz_history_runs{{{pipe},status="completed"}}'] == 1
    assert s[f'atroz_history_runs{{{pipe},status="failed"}}'] == 1
    assert s[f'atroz_history_phase_runs{{{pipe},phase="P07",status="failed"}}'] == 1
    assert s[f'atroz_history_phase_duration_seconds_count{{{pipe},phase="P00"}}'] == 2
    assert s['atroz_runs{status="failed"}'] == 1
    assert s['atroz_runs{status="completed"}'] == 1
    assert text.count("# HELP ") == text.count("# TYPE ")


def test_errors_total_is_the_count_every_surface_shows(logs: Any) -> None:
    """atroz_errors_total: the demo run failing in P07.rules (which fails P07 and the run,
    the pipeline's latest, so it keeps run-labelled series) has 1 error, the snapshot's
    errors.count; the earlier completed run (0 errors) is folded into history, unlabelled."""
    st, _, _ = report.load([str(logs)])
    s = _samples(prometheus.prometheus(st, now=time.time()))
    counts = {rid: views.snapshot(st, rid, now=time.time())["errors"]["count"] for rid in st.runs}
    assert sorted(counts.values()) == [0, 1]
    failed = next(rid for rid, n in counts.items() if n == 1)
    done = next(rid for rid, n in counts.items() if n == 0)
    assert s[f'atroz_errors_total{{run="{failed}"}}'] == 1
    assert f'atroz_errors_total{{run="{done}"}}' not in s


def _synthetic(key: str, durations_ms: list[float], max_phases: int = 10_000) -> State:
    st = State(max_phases=max_phases)
    evs: list[dict[str, Any]] = [{"ev": "run_start", "ts": 1000.0, "name": "n", "plan": []}]
    t = 1000.0
    for i, d in enumerate(durations_ms):
        evs.append({"ev": "phase_start", "ts": t, "span": f"1.{i}", "phase": key})
        t += d / 1000
        evs.append({"ev": "phase_end", "ts": t, "span": f"1.{i}", "phase": key,
                    "status": "completed", "duration_ms": d})  # fmt: skip
    for seq, ev in enumerate(evs, 1):
        apply(st, {"run": "r1", "pid": 1, "seq": seq, **ev})
    return st


def test_histogram_buckets_are_exact_and_cumulative() -> None:
    """Durations of 3 ms, 40 ms and 2 s fall in le=0.005, 0.05 and 2.5: cumulative counts
    1, 2, 3 there, count 3 and sum 2.043 s."""
    s = _samples(prometheus.prometheus(_synthetic("P00", [3.0, 40.0, 2000.0]), now=2000.0))
    b = 'atroz_phase_duration_seconds_bucket{run="r1",phase="P00",le="%s"}'
    assert [s[b % le] for le in ("0.005", "0.01", "0.05", "1.0", "2.5", "3600.0", "+Inf")] == [
        1, 1, 2, 2, 3, 3, 3,
    ]  # fmt: skip
    assert s['atroz_phase_duration_seconds_count{run="r1",phase="P00"}'] == 3
    assert s['atroz_phase_duration_seconds_sum{run="r1",phase="P00"}'] == pytest.approx(2.043)


def test_histogram_stays_exact_when_records_are_folded() -> None:
    """Beyond max_phases the reducer folds repeats away, but its per-key bucket counters
    keep the histogram exact: 100 phases of 1 ms are all in le=0.005."""
    text = prometheus.prometheus(_synthetic("loop", [1.0] * 100, max_phases=10), now=2000.0)
    s = _samples(text)
    assert s['atroz_phase_duration_seconds_bucket{run="r1",phase="loop",le="0.005"}'] == 100
    assert s['atroz_phase_duration_seconds_sum{run="r1",phase="loop"}'] == pytest.approx(0.1)


def test_histogram_sends_only_inf_for_calls_summed_by_the_writer() -> None:
    """Calls recorded as an aggregate (a hot loop) have no per-call durations: the key
    sends only its +Inf bucket, with count and sum still exact."""
    st = _synthetic("loop", [1.0] * 3)
    apply(st, {"run": "r1", "pid": 1, "seq": 99, "ev": "aggregate", "ts": 1001.0,
               "phase": "loop", "parent": None, "count": 1000, "completed": 1000,
               "total_ms": 2000.0, "min_ms": 1.5, "max_ms": 2.5})  # fmt: skip
    text = prometheus.prometheus(st, now=2000.0)
    buckets = [ln for ln in text.splitlines() if ln.startswith("atroz_phase_duration_seconds_b")]
    assert buckets == ['atroz_phase_duration_seconds_bucket{run="r1",phase="loop",le="+Inf"} 1003']
    s = _samples(text)
    assert s['atroz_phase_duration_seconds_sum{run="r1",phase="loop"}'] == pytest.approx(2.003)


def _history(n: int, keys: int, pipelines: int = 1) -> list[dict[str, Any]]:
    """``n`` finished runs' catalog summaries (``keys`` phase keys each, durations varying
    per run), spread over ``pipelines`` names; built from one reduced run with new ids."""
    from atroz_monitor.read import catalog

    st = State()
    evs: list[dict[str, Any]] = [{"ev": "run_start", "ts": 1000.0, "name": "n", "plan": []}]
    for k in range(keys):
        evs.append({"ev": "phase_start", "ts": 1000.0 + k, "span": f"1.{k}", "phase": f"K{k:02d}"})
        evs.append({"ev": "phase_end", "ts": 1000.5 + k, "span": f"1.{k}", "phase": f"K{k:02d}",
                    "status": "completed", "duration_ms": 500.0, "cpu_ms": 100.0})  # fmt: skip
    evs.append({"ev": "run_end", "ts": 1000.0 + keys, "status": "completed"})
    for seq, ev in enumerate(evs, 1):
        apply(st, {"run": "r", "pid": 1, "seq": seq, **ev})
    base = catalog.summarize(st.runs["r"])
    raw = base["phases"].raw
    out = []
    for i in range(n):
        ph = {k: [*v[:8], v[8] * (1 + i % 7), *v[9:]] for k, v in raw.items()}
        out.append({**base, "run": f"h{i:05d}", "name": f"pipe{i % pipelines}",
                    "start": 1000.0 + i * 60, "phases": catalog.Phases(ph)})  # fmt: skip
    return out


def test_metrics_on_10000_runs_are_bounded_and_promtool_clean() -> None:
    """/metrics over 10,000 catalogued runs of 20 phase keys: under 2 MB, accepted by
    promtool, one run-labelled run (the pipeline's latest), and every run counted once in
    the history histogram of each key."""
    text = prometheus.prometheus(State(), history=_history(10_000, 20), now=2e9)
    assert len(text.encode()) < 2_000_000
    r = _promtool(text)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert set(re.findall(r'run="([^"]+)"', text)) == {"h09999"}
    s = _samples(text)
    assert s['atroz_history_runs{pipeline="pipe0",status="completed"}'] == 10_000
    assert s['atroz_history_phase_duration_seconds_count{pipeline="pipe0",phase="K07"}'] == 10_000
    # durations 0.5 s x (1..7): 0.5, 1.0 fall in le=1.0; runs i % 7 in (0, 1)
    want = sum(1 for i in range(10_000) if i % 7 in (0, 1))
    b = 'atroz_history_phase_duration_seconds_bucket{pipeline="pipe0",phase="K07",le="1.0"}'
    assert s[b] == want


def test_series_count_follows_the_documented_formula() -> None:
    """The series count grows with phases and pipelines, not runs: 100 and 1,000 runs of
    the same 3 pipelines give the same count, within SCALING.md's bound."""

    def series(n: int) -> int:
        text = prometheus.prometheus(State(), history=_history(n, 5, pipelines=3), now=2e9)
        return sum(1 for ln in text.splitlines() if ln and not ln.startswith("#"))

    k, p = 5, 3
    assert series(100) == series(1000)
    bound = (p * (30 + 26 * k)) + p * (5 + k * (21 + 5)) + 5
    assert series(1000) <= bound


def test_pipelines_beyond_the_cap_are_summed_as_other() -> None:
    """Runs of 50 different names: 20 pipelines keep their own series, the rest are summed
    under pipeline "_other" (a run-unique name cannot explode cardinality)."""
    text = prometheus.prometheus(State(), history=_history(50, 2, pipelines=50), now=2e9)
    pipes = set(re.findall(r'atroz_history_runs\{pipeline="([^"]+)"', text))
    assert len(pipes) == prometheus.MAX_PIPELINES + 1 and "_other" in pipes
    s = _samples(text)
    assert s['atroz_history_runs{pipeline="_other",status="completed"}'] == 30
    assert len(set(re.findall(r'run="([^"]+)"', text))) == prometheus.MAX_PIPELINES


def test_label_values_are_escaped() -> None:
    """A phase named a"b\\c<newline>d is written a\\"b\\\\c\\nd, promtool accepts it and a
    parser gets the name back."""
    name = 'a"b\\c\nd'
    text = prometheus.prometheus(_synthetic(name, [5.0]), now=2000.0)
    assert 'phase="a\\"b\\\\c\\nd"' in text
    r = _promtool(text)
    assert (r.returncode, r.stdout) == (0, "")
    parser = pytest.importorskip("prometheus_client.parser")
    fam = next(f for f in parser.text_string_to_metric_families(text) if f.name == "atroz_phases")
    assert {smp.labels["phase"] for smp in fam.samples} == {name}


def test_accept_header_negotiation() -> None:
    """OpenMetrics when Accept prefers it (Prometheus's own header), 0.0.4 otherwise."""
    assert prometheus.wants_openmetrics(OM_ACCEPT)
    assert prometheus.wants_openmetrics("application/openmetrics-text")
    assert not prometheus.wants_openmetrics(None)
    assert not prometheus.wants_openmetrics("text/plain;version=0.0.4")
    assert not prometheus.wants_openmetrics("text/plain, application/openmetrics-text;q=0.5")
    assert not prometheus.wants_openmetrics("application/openmetrics-text;q=0")


def test_metrics_route_serves_both_formats(logs: Any) -> None:
    """GET /metrics answers 0.0.4 text by default and OpenMetrics when asked, with the exact
    content types; HEAD sends the same headers without a body."""
    src = source.FileSource([logs])
    try:
        resp = api.route(src, "GET", "/metrics", "", {})
        h = dict(resp.headers)
        assert (resp.status, h["Content-Type"]) == (200, prometheus.PROMETHEUS_CONTENT_TYPE)
        assert h["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert b"atroz_phase_duration_seconds_count{" in resp.body
        assert h["X-Content-Type-Options"] == "nosniff"
        om = api.route(src, "GET", "/metrics", "", {"accept": OM_ACCEPT})
        assert dict(om.headers)["Content-Type"] == (
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        )
        assert om.body.endswith(b"# EOF\n")
        head = api.route(src, "HEAD", "/metrics", "", {})
        assert head.body == b"" and dict(head.headers)["Content-Length"] == str(len(resp.body))
    finally:
        src.close()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_metrics_needs_the_token_like_every_route(logs: Any) -> None:
    """With a token configured, /metrics is 401 without it and 200 with the Bearer token;
    a foreign Host is 403."""
    srv = server.start_server(source.FileSource([logs]), port=0, token="s3cret-token",
                              _own_source=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{srv.port}/metrics"
        assert _get(url)[0] == 401
        status, body = _get(url, {"Authorization": "Bearer s3cret-token"})
        assert status == 200 and b"# TYPE atroz_runs gauge" in body
        bad_host = {"Authorization": "Bearer s3cret-token", "Host": "evil.example"}
        assert _get(url, bad_host)[0] == 403
    finally:
        srv.close()


# -- a real Prometheus server ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape_config(token_file: str, target: str, open_target: str) -> str:
    """The scrape config of docs/SCALING.md, verbatim but for the targets, the interval and
    the token path; plus a job scraping a server without a token."""
    with open(SCALING, encoding="utf-8") as f:
        doc = f.read()
    block = re.search(r"<!-- scrape-config.*?-->\n```yaml\n(.*?)```", doc, re.S)
    assert block is not None, "the scrape config snippet is missing from docs/SCALING.md"
    cfg = block.group(1)
    cfg = cfg.replace("scrape_interval: 15s", "scrape_interval: 1s")
    cfg = cfg.replace("/etc/prometheus/atroz-token", token_file)
    cfg = re.sub(r"(- targets:\n)(\s+- \S+\n)+", rf"\1          - {target}\n", cfg)
    assert target in cfg and "build-0" not in cfg
    return cfg + (
        "  - job_name: atroz-open\n"
        "    scrape_interval: 1s\n"
        "    static_configs:\n"
        f"      - targets: ['{open_target}']\n"
    )


@pytest.mark.slow
def test_real_prometheus_scrapes_the_documented_config(logs: Any, tmp_path: Any) -> None:
    """A real Prometheus, configured with the SCALING.md scrape config (token via
    `authorization`), scrapes a token-protected atroz server and an open one; its query API
    then returns atroz_phase_duration_seconds_count for both jobs."""
    prom = require_tool("prometheus")
    token_file = tmp_path / "atroz-token"
    token_file.write_text("scrape-token-42\n")
    guarded = server.start_server(source.FileSource([logs]), port=0, token="scrape-token-42",
                                  allow_hosts=["localhost"], _own_source=True)  # fmt: skip
    opened = server.start_server(source.FileSource([logs]), port=0, _own_source=True)
    port = _free_port()
    cfg = _scrape_config(str(token_file), f"localhost:{guarded.port}", f"127.0.0.1:{opened.port}")
    (tmp_path / "prom.yml").write_text(cfg)
    proc = subprocess.Popen(
        [
            prom,
            f"--config.file={tmp_path / 'prom.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115 (closed with the process)
    )
    try:
        base = f"http://127.0.0.1:{port}"
        query = "count by (job) (atroz_phase_duration_seconds_count)"
        url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        deadline = time.monotonic() + 30
        jobs: dict[str, float] = {}
        while time.monotonic() < deadline and len(jobs) < 2:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                status, body = _get(url)
            except OSError:
                status, body = 0, b""  # not listening yet
            if status == 200:
                res = json.loads(body)["data"]["result"]
                jobs = {r["metric"]["job"]: float(r["value"][1]) for r in res}
            if len(jobs) < 2:
                time.sleep(0.25)  # bounded poll (deadline above), not a fixed wait
        assert set(jobs) == {"atroz", "atroz-open"}, (tmp_path / "prometheus.log").read_text()[
            -2000:
        ]
        # The latest run x its phase keys (P00..P09 with sub-phases), each one series.
        assert jobs["atroz"] == jobs["atroz-open"] > 20
        _, body = _get(f"{base}/api/v1/targets")
        targets = json.loads(body)["data"]["activeTargets"]
        assert {t["labels"]["job"]: t["health"] for t in targets} == {
            "atroz": "up",
            "atroz-open": "up",
        }
        info = urllib.parse.urlencode({"query": 'atroz_run_info{status="failed"}'})
        _, body = _get(f"{base}/api/v1/query?{info}")
        assert len(json.loads(body)["data"]["result"]) == 2  # one per job
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        guarded.close()
        opened.close()


def test_history_index_is_reused_and_follows_a_new_list() -> None:
    """A scrape over the same catalog list reuses its index (same text); a list with one
    run more counts it (the cache is keyed by the summaries themselves)."""
    runs = _history(50, 3)
    first = prometheus.prometheus(State(), history=runs, now=2e9)
    assert prometheus.prometheus(State(), history=runs, now=2e9) == first
    more = runs + _history(51, 3)[50:]
    s = _samples(prometheus.prometheus(State(), history=more, now=2e9))
    assert s['atroz_history_runs{pipeline="pipe0",status="completed"}'] == 51
    assert 'run="h00050"' in prometheus.prometheus(State(), history=more, now=2e9)


def test_a_duration_exactly_on_a_bound_counts_in_that_bucket() -> None:
    """Prometheus buckets are `le` (less or equal): 5 ms exactly is in le=0.005 and 2.5 s
    exactly in le=2.5, not in the next bucket."""
    s = _samples(prometheus.prometheus(_synthetic("P00", [5.0, 2500.0]), now=2000.0))
    b = 'atroz_phase_duration_seconds_bucket{run="r1",phase="P00",le="%s"}'
    assert [s[b % le] for le in ("0.005", "0.01", "1.0", "2.5", "+Inf")] == [1, 1, 1, 2, 2]
