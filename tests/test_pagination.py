"""Every list route is paginated: limit, cursor, bounded defaults, filters."""

from __future__ import annotations

import json
import pathlib
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor.store.source import FileSource
from atroz_monitor.surface import api

T0 = 1_700_000_000.0


def run_log(rid: str, start: float, name: str, status: str = "completed", phases: int = 3) -> str:
    evs: list[dict[str, Any]] = [
        {"ev": "run_start", "ts": start, "run": rid, "pid": 1, "seq": 0, "v": 1, "name": name,
         "plan": [{"id": f"P{i:02d}"} for i in range(phases)]},
    ]  # fmt: skip
    t = start
    for i in range(phases):
        span = f"s{i}"
        evs.append({"ev": "phase_start", "ts": t, "run": rid, "pid": 1, "seq": 2 * i + 1,
                    "span": span, "phase": f"P{i:02d}", "name": f"P{i:02d}"})  # fmt: skip
        t += 0.5 + i
        evs.append({"ev": "phase_end", "ts": t, "run": rid, "pid": 1, "seq": 2 * i + 2,
                    "span": span, "phase": f"P{i:02d}", "status": "completed",
                    "duration_ms": (0.5 + i) * 1000.0})  # fmt: skip
    evs.append({"ev": "log", "ts": t, "run": rid, "pid": 1, "seq": 90, "level": "warning",
                "msg": "w1"})  # fmt: skip
    evs.append({"ev": "log", "ts": t, "run": rid, "pid": 1, "seq": 91, "level": "warning",
                "msg": "w2"})  # fmt: skip
    evs.append({"ev": "run_end", "ts": t, "run": rid, "pid": 1, "seq": 99, "status": status})
    return "".join(json.dumps(e) + "\n" for e in evs)


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """45 finished runs of two pipelines, one minute apart (two share a start time)."""
    d = tmp_path_factory.mktemp("runs")
    for i in range(45):
        start = T0 + (i if i != 44 else 43) * 60
        name = "alpha" if i % 3 else "beta"
        status = "failed" if i % 10 == 0 else "completed"
        (d / f"r{i:02d}.jsonl").write_text(run_log(f"r{i:02d}", start, name, status))
    s = FileSource([d])
    yield s
    s.close()


def get(src: Any, path: str, query: str = "") -> tuple[int, Any]:
    r = api.route(src, "GET", path, query)
    return r.status, json.loads(r.body)


def all_pages(src: Any, path: str, key: str, query: str) -> list[Any]:
    out: list[Any] = []
    cursor = None
    for _ in range(100):
        q = query + (f"&cursor={cursor}" if cursor else "")
        status, body = get(src, path, q)
        assert status == 200, body
        out.extend(body[key])
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("pagination did not end")


def test_runs_default_limit_and_total(src: Any) -> None:
    """/api/v1/runs without limit gives the newest 100 at most: here all 45, newest first,
    with total 45, counts by status and the pipeline names counted."""
    status, body = get(src, "/api/v1/runs")
    assert status == 200
    assert (len(body["runs"]), body["total"], body["limit"], body["next_cursor"]) == (
        45,
        45,
        100,
        None,
    )
    assert body["runs"][0]["id"] in ("r43", "r44") and body["runs"][-1]["id"] == "r00"
    assert body["counts"] == {"completed": 40, "failed": 5}
    assert body["names"][:2] == [
        {"name": "alpha", "runs": 30, "latest_start": T0 + 43 * 60},
        {"name": "beta", "runs": 15, "latest_start": T0 + 42 * 60},
    ]


@pytest.mark.parametrize("limit", [1, 7, 44, 45])
def test_runs_pages_cover_every_run_once(src: Any, limit: int) -> None:
    """Following next_cursor with any limit lists every run exactly once, in the same order
    as one big page (ties on start broken by id)."""
    whole = [r["id"] for r in get(src, "/api/v1/runs", "limit=1000")[1]["runs"]]
    paged = [r["id"] for r in all_pages(src, "/api/v1/runs", "runs", f"limit={limit}")]
    assert paged == whole and len(set(paged)) == 45


def test_runs_filters(src: Any) -> None:
    """status, name, q and since/until filter the runs before paging."""
    assert get(src, "/api/v1/runs", "status=failed")[1]["total"] == 5
    assert get(src, "/api/v1/runs", "name=beta")[1]["total"] == 15
    assert [r["id"] for r in get(src, "/api/v1/runs", "q=R1")[1]["runs"]] == [
        f"r{i}" for i in range(19, 9, -1)
    ]
    since, until = T0 + 10 * 60, T0 + 13 * 60
    body = get(src, "/api/v1/runs", f"since={since}&until={until}")[1]
    assert [r["id"] for r in body["runs"]] == ["r12", "r11", "r10"]


@pytest.mark.parametrize(
    ("query", "word"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=nonsense!", "cursor"),
        ("cursor=WyJ4Il0", "cursor"),  # base64 of ["x"]: not one of ours
        ("since=abc", "since"),
        ("status=done", "status"),
    ],
)
def test_runs_bad_paging_values_are_400(src: Any, query: str, word: str) -> None:
    """A limit out of range, a cursor not given out, a bad filter: 400 naming it."""
    status, body = get(src, "/api/v1/runs", query)
    assert status == 400 and body["error"].startswith(word)


def test_run_lists_are_paginated(src: Any) -> None:
    """A run's phases, warnings and alerts page by position; the pages join to the whole."""
    status, body = get(src, "/api/v1/runs/r05/phases", "limit=2")
    assert status == 200
    assert ([p["phase"] for p in body["phases"]], body["total"]) == (["P00", "P01"], 3)
    rest = get(src, "/api/v1/runs/r05/phases", f"limit=2&cursor={body['next_cursor']}")[1]
    assert ([p["phase"] for p in rest["phases"]], rest["next_cursor"]) == (["P02"], None)
    w = get(src, "/api/v1/runs/r05/warnings", "limit=1")[1]
    assert ([x["msg"] for x in w["warnings"]], w["page"]["total"]) == (["w1"], 2)
    w2 = get(src, "/api/v1/runs/r05/warnings", f"limit=1&cursor={w['page']['next_cursor']}")[1]
    assert [x["msg"] for x in w2["warnings"]] == ["w2"] and w2["page"]["next_cursor"] is None
    assert get(src, "/api/v1/runs/r05/alerts")[1]["next_cursor"] is None


def test_history_pages_newest_first(src: Any) -> None:
    """Phase history with limit=10 gives the 10 newest rows (oldest first within the page),
    the statistics over all 45, and a cursor to the older ones; the pages join to the whole."""
    status, body = get(src, "/api/v1/phases/P01/history", "limit=10")
    assert status == 200
    assert body["count"] == 45 and body["stats"]["duration_ms"]["count"] == 45
    assert len(body["runs"]) == 10 and body["next_cursor"] is not None
    whole = get(src, "/api/v1/phases/P01/history", "limit=1000")[1]["runs"]
    pages: list[list[Any]] = []
    cursor = ""
    while True:
        b = get(src, "/api/v1/phases/P01/history", f"limit=10{cursor}")[1]
        pages.insert(0, b["runs"])
        if b["next_cursor"] is None:
            break
        cursor = f"&cursor={b['next_cursor']}"
    assert [r["run"] for p in pages for r in p] == [r["run"] for r in whole]


def test_concurrent_requests_compute_a_cross_run_answer_once(src: Any) -> None:
    """Eight requests at once for an answer over every run share one computation."""
    calls = []
    gate = threading.Event()

    def slow() -> int:
        calls.append(1)
        gate.wait(5)
        return 42

    out: list[int] = []
    threads = [
        threading.Thread(target=lambda: out.append(src.cached(("test-once",), slow)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert (len(calls), out) == (1, [42] * 8)


@settings(max_examples=30, deadline=None)
@given(limit=st.integers(1, 60), skip=st.integers(0, 50))
def test_any_cursor_resumes_after_its_last_item(src: Any, limit: int, skip: int) -> None:
    """The page after a cursor starts with the run right after the cursor's last run."""
    whole = [r["id"] for r in get(src, "/api/v1/runs", "limit=1000")[1]["runs"]]
    first = get(src, "/api/v1/runs", f"limit={min(skip + 1, 45)}")[1]
    if first["next_cursor"] is None:
        return
    nxt = get(src, "/api/v1/runs", f"limit={limit}&cursor={first['next_cursor']}")[1]
    k = len(first["runs"])
    assert [r["id"] for r in nxt["runs"]] == whole[k : k + limit]


def test_empty_directory_has_no_pages(tmp_path: pathlib.Path) -> None:
    """An empty directory: no runs, total 0, no cursor."""
    s = FileSource([tmp_path])
    try:
        body = get(s, "/api/v1/runs")[1]
        assert (body["runs"], body["total"], body["next_cursor"], body["counts"]) == (
            [],
            0,
            None,
            {},
        )
    finally:
        s.close()
