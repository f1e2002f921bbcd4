"""Run tags on the reading side: history, trends and baselines restricted to runs with
matching tags (history.py, report --baseline-tag, the read API), and tags in the reports."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from atroz_monitor.commands import cli, report
from atroz_monitor.read.loader import load_state
from atroz_monitor.surface.runs import load
from atroz_monitor.view import history

T0 = 1_790_000_000.0  # a fixed wall clock: runs an hour apart, in the order written


def synth_run(
    path: str | os.PathLike[str],
    run_id: str,
    *,
    start: float,
    durations: Mapping[str, float],
    tags: Any = None,
    status: str = "completed",
    host: str = "ci-box",
    end: bool = True,
    alert: bool = False,
) -> None:
    """Write one run log the way the monitor would: run_start (with ``tags`` if given), the
    top-level phases one after another with these durations (ms), optionally an alert, and
    run_end (unless ``end`` is False: a run cut short)."""
    pid = 4242
    seq = 0
    lines: list[dict[str, Any]] = []

    def ev(kind: str, ts: float, **fields: Any) -> None:
        nonlocal seq
        seq += 1
        lines.append(
            {"ev": kind, "ts": round(ts, 6), "run": run_id, "pid": pid, "seq": seq, **fields}
        )

    plan = [{"id": k, "name": f"step {k}"} for k in durations]
    info: dict[str, Any] = {"v": 1, "name": f"nightly {run_id}", "host": host, "plan": plan}
    if tags is not None:
        info["tags"] = tags
    ev("run_start", start, **info)
    t = start + 0.001
    for i, (key, ms) in enumerate(durations.items()):
        span = f"{pid}.{i + 1}"
        ev("phase_start", t, span=span, phase=key, name=f"step {key}", parent=None)
        t += ms / 1000.0
        last = i == len(durations) - 1
        st = "failed" if status == "failed" and last else "completed"
        extra: dict[str, Any] = (
            {"error": {"type": "RuntimeError", "msg": "boom"}} if st == "failed" else {}
        )
        ev(
            "phase_end",
            t,
            span=span,
            phase=key,
            name=f"step {key}",
            parent=None,
            status=st,
            duration_ms=ms,
            cpu_ms=ms / 2,
            items=100,
            **extra,
        )
        if alert and i == 0:
            ev(
                "alert",
                t,
                alert=f"slow:{key}",
                rule="slow",
                severity="warning",
                state="raised",
                phase=key,
                span=span,
                value=ms,
                threshold=1.0,
                msg=f"{key} took {ms} ms",
            )
    if end:
        ev("run_end", t + 0.001, status=status)
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


SMALL = {"P00": 10.0, "P01": 20.0}
LARGE = {"P00": 100.0, "P01": 200.0}
SUBJECT = {"P00": 104.0, "P01": 206.0}  # slow next to small runs, normal next to large ones


def make_history(base: Path, subject_dir: Path | None = None) -> str:
    """Two runs tagged dataset=small (fast), two dataset=large (slow) in ``base``; the
    subject (dataset=large, the latest) in ``subject_dir`` or ``base``. Returns its id.

    Four baseline runs: the median rule, so the mixed median (55 ms for P00) is what an
    untagged comparison sees."""
    base.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        synth_run(
            base / f"s{i}.jsonl",
            f"small-{i}",
            start=T0 + 3600 * (2 * i),
            durations=SMALL,
            tags={"dataset": "small", "git": f"a{i}"},
        )
        synth_run(
            base / f"l{i}.jsonl",
            f"large-{i}",
            start=T0 + 3600 * (2 * i + 1),
            durations=LARGE,
            tags={"dataset": "large", "git": f"a{i}"},
        )
    where = subject_dir or base
    where.mkdir(parents=True, exist_ok=True)
    synth_run(
        where / "subject.jsonl",
        "subject",
        start=T0 + 3600 * 10,
        durations=SUBJECT,
        tags={"dataset": "large", "git": "b7"},
    )
    return "subject"


def _report(argv: list[str], out: Path) -> tuple[int, str]:
    rc = cli.main(["report", *argv, "--output", str(out), "--color", "never"])
    return rc, out.read_text(encoding="utf-8") if out.exists() else ""


# -- history.py ---------------------------------------------------------------------------


def test_history_views_restricted_to_matching_tags(tmp_path: Path) -> None:
    """phase_history, phase_trends, rows, runs_before, durations_by_key and medians_s only
    see runs whose tags include every pair asked for."""
    make_history(tmp_path)
    st, _ = load_state([tmp_path])
    large = {"dataset": "large"}
    assert [s["run"] for s in history.runs_before(st, "subject", large)] == ["large-0", "large-1"]
    assert [row["duration_ms"] for row in history.rows(st, "P00", "subject", large)] == [100.0] * 2
    h = history.phase_history(st, "P01", before="subject", tags=large)
    assert h["count"] == 2 and h["stats"]["duration_ms"]["median"] == 200.0
    assert history.phase_history(st, "P01", before="subject")["count"] == 4
    assert history.phase_trends(st, "P01", before="subject", tags={"dataset": "small"})["runs"] == 2
    assert history.durations_by_key(st, "subject", {"dataset": "small"}) == {
        "P00": [10.0] * 2,
        "P01": [20.0] * 2,
    }
    assert history.medians_s(st, ["P00"], "subject", large) == {"P00": 0.1}
    both = {"dataset": "large", "git": "a1"}
    assert [s["run"] for s in history.runs_before(st, None, both)] == ["large-1"]
    assert history.runs_before(st, None, {"dataset": "medium"}) == []


def test_history_signatures_without_tags_unchanged(tmp_path: Path) -> None:
    """The existing positional and keyword calls work and see every run."""
    make_history(tmp_path)
    st, _ = load_state([tmp_path])
    assert len(history.runs_before(st, "subject")) == 4
    assert len(history.rows(st, "P00", "subject")) == 4
    assert history.phase_history(st, "P00", before="subject", limit=2)["count"] == 4
    assert len(history.phase_history(st, "P00", before="subject", limit=2)["runs"]) == 2
    assert len(history.durations_by_key(st, "subject")["P00"]) == 4
    assert history.medians_s(st, ["P00"], None) == {"P00": pytest.approx(0.1)}


def test_run_without_tags_or_with_malformed_tags_has_none(tmp_path: Path) -> None:
    """A missing or non-object ``tags`` reads as no tags: such a run matches only an empty
    filter, and its snapshot shows ``tags: {}``."""
    synth_run(tmp_path / "a.jsonl", "none", start=T0, durations=SMALL)
    synth_run(tmp_path / "b.jsonl", "bad", start=T0 + 1, durations=SMALL, tags="dataset=x")
    synth_run(
        tmp_path / "c.jsonl", "odd", start=T0 + 2, durations=SMALL, tags={"n": 1000, "ok": True}
    )
    st, _ = load_state([tmp_path])
    assert history.run_tags(st.runs["none"]) == {}
    assert history.run_tags(st.runs["bad"]) == {}
    # A hand-written log may hold numbers: compared as their JSON text.
    assert history.run_tags(st.runs["odd"]) == {"n": "1000", "ok": "true"}
    assert history.matches(st.runs["bad"], None) and history.matches(st.runs["bad"], {})
    assert not history.matches(st.runs["bad"], {"dataset": "x"})
    runs = load(tmp_path)
    assert runs["bad"].snapshot["run"]["tags"] == {}
    assert runs.filter(tags={"n": "1000"}).ids == ["odd"]


# -- report --baseline-tag ----------------------------------------------------------------


def test_baseline_tag_compares_like_with_like(tmp_path: Path) -> None:
    """A slow subject regresses against all baselines (exit 1) but not against the baselines
    tagged like it (exit 0): --baseline-tag dataset=large."""
    subj = tmp_path / "subject"
    base = tmp_path / "base"
    make_history(base, subj)
    args = [str(subj), "--baseline", str(base), "--fail-on-regression", "--format", "json"]
    rc, text = _report(args, tmp_path / "all.json")
    assert rc == 1
    c = json.loads(text)["comparison"]
    assert c["baseline_runs"] == 4 and c["regressions"] == ["P00", "P01"]
    rc, text = _report([*args, "--baseline-tag", "dataset=large"], tmp_path / "large.json")
    assert rc == 0
    model = json.loads(text)
    c = model["comparison"]
    assert c["baseline_runs"] == 2 and c["regressions"] == []
    assert c["phases"]["P00"]["reference"] == 100.0 and c["phases"]["P00"]["current"] == 104.0
    assert model["baseline_tags"] == {"dataset": "large"}


def test_baseline_tags_repeat_and_all_must_match(tmp_path: Path) -> None:
    """Repeated --baseline-tag pairs are ANDed: dataset=large and git=a1 is one run."""
    subj = tmp_path / "subject"
    base = tmp_path / "base"
    make_history(base, subj)
    argv = [str(subj), "--baseline", str(base), "--format", "json"]
    tags = ["--baseline-tag", "dataset=large", "--baseline-tag", "git=a1"]
    rc, text = _report([*argv, *tags], tmp_path / "r.json")
    assert rc == 0
    c = json.loads(text)["comparison"]
    assert c["baseline_runs"] == 1 and c["phases"]["P01"]["rule"] == "single"


def test_baseline_tag_restricts_history(tmp_path: Path) -> None:
    """Without --baseline, the other runs read are the history: --baseline-tag keeps only
    the matching ones (history median 100 ms, not the 55 ms of all six), and no anomaly."""
    make_history(tmp_path)
    rc, text = _report([str(tmp_path), "--format", "json"], tmp_path / "all.json")
    assert rc == 0
    h = json.loads(text)["history"]["P00"]
    assert h["runs"] == 4 and h["median_ms"] == 55.0
    rc, text = _report(
        [str(tmp_path), "--format", "json", "--baseline-tag", "dataset=large"],
        tmp_path / "large.json",
    )
    model = json.loads(text)
    h = model["history"]["P00"]
    assert h["runs"] == 2 and h["median_ms"] == 100.0 and h["series_ms"] == [100.0] * 2
    assert model["anomalies"] == []
    assert model["runs_table"]["runs"] == ["large-0", "large-1", "subject"]
    assert model["progress"]["history_runs"] == 2


def test_baseline_tag_value_splits_at_first_equals(tmp_path: Path) -> None:
    """dataset=n=1e6 is key dataset, value n=1e6 (values may hold '=')."""
    assert report.parse_tags(["dataset=n=1e6", "git=", "host_class=m5.xlarge"]) == {
        "dataset": "n=1e6",
        "git": "",
        "host_class": "m5.xlarge",
    }
    synth_run(tmp_path / "a.jsonl", "a", start=T0, durations=LARGE, tags={"dataset": "n=1e6"})
    synth_run(tmp_path / "b.jsonl", "b", start=T0 + 1, durations=SMALL, tags={"dataset": "n=1"})
    synth_run(tmp_path / "c.jsonl", "c", start=T0 + 2, durations=LARGE, tags={"dataset": "n=1e6"})
    rc, text = _report(
        [str(tmp_path), "--format", "json", "--baseline-tag", "dataset=n=1e6"], tmp_path / "r.json"
    )
    assert rc == 0
    assert json.loads(text)["history"]["P00"]["runs"] == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("dataset", "expected KEY=VALUE, got 'dataset'"),
        ("=large", "expected KEY=VALUE, got '=large'"),
        ("dataset=a", "'dataset' given twice ('small' and 'a')"),
    ],
)
def test_bad_baseline_tag_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    """A malformed or contradictory --baseline-tag: one line on stderr, exit 2, no output."""
    make_history(tmp_path)
    out = tmp_path / "r.txt"
    rc = cli.main(
        ["report", str(tmp_path), "--baseline-tag", "dataset=small", "--baseline-tag", value]
        + ["--output", str(out)]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert err == f"atroz-monitor: report: --baseline-tag: {message}\n"
    assert not out.exists()


def test_tags_shown_in_text_markdown_and_json(tmp_path: Path) -> None:
    """The subject's tags are in the text header, the markdown header and the JSON run; the
    tag restriction is stated in both headers."""
    make_history(tmp_path)
    common = [str(tmp_path), "--baseline-tag", "dataset=large"]
    rc, text = _report([*common, "--format", "text"], tmp_path / "r.txt")
    assert rc == 0
    lines = text.splitlines()
    assert "tags dataset=large, git=b7" in lines
    assert "history and baseline: only runs tagged dataset=large" in lines
    rc, md = _report([*common, "--format", "markdown"], tmp_path / "r.md")
    assert rc == 0
    assert "Tags: dataset=large, git=b7." in md.splitlines()
    assert "History and baseline: only runs tagged dataset=large." in md.splitlines()
    rc, js = _report([*common, "--format", "json"], tmp_path / "r.json")
    model = json.loads(js)
    assert model["run"]["tags"] == {"dataset": "large", "git": "b7"}
    assert model["snapshot"]["run"]["tags"] == {"dataset": "large", "git": "b7"}
    rc, plain = _report([str(tmp_path), "--format", "text"], tmp_path / "plain.txt")
    assert "history and baseline" not in plain
    assert (
        json.loads(_report([str(tmp_path), "--format", "json"], tmp_path / "p.json")[1])[
            "baseline_tags"
        ]
        == {}
    )


def test_html_report_history_restricted_by_tag(tmp_path: Path) -> None:
    """--format html embeds only the matching runs in its runs list."""
    make_history(tmp_path)
    rc, html = _report(
        [str(tmp_path), "--format", "html", "--baseline-tag", "dataset=small"],
        tmp_path / "r.html",
    )
    assert rc == 0
    assert "small-1" in html and "large-1" not in html and "subject" in html


# -- the read API -------------------------------------------------------------------------


def test_read_api_filters_history_and_compare_by_tags(tmp_path: Path) -> None:
    """load(tags=), Runs.filter(tags=), history(tags=) and compare against a tagged
    baseline give the same answers as the report."""
    make_history(tmp_path)
    runs = load(tmp_path)
    assert len(runs) == 5
    large = runs.filter(tags={"dataset": "large"})
    assert large.ids == ["large-0", "large-1", "subject"]
    assert load(tmp_path, tags={"dataset": "large"}).ids == large.ids
    assert runs.history("P00", tags={"dataset": "small"})["count"] == 2
    assert large.history("P00", before="subject")["stats"]["duration_ms"]["median"] == 100.0
    assert large.trends("P01")["runs"] == 3
    assert runs.compare("subject")["regressions"] == ["P00", "P01"]
    c = runs.compare("subject", baseline=large)
    assert c["regressions"] == [] and c["baseline_runs"] == 2
    assert [r["tag.dataset"] for r in large.to_records()] == ["large"] * 3
    assert runs["subject"].tags == {"dataset": "large", "git": "b7"}


def test_read_api_rejects_tags_that_are_not_strings(tmp_path: Path) -> None:
    """tags must map str to str: a number is a TypeError, not a silent no-match."""
    make_history(tmp_path)
    runs = load(tmp_path)
    with pytest.raises(TypeError, match="tags must be a mapping of str to str"):
        runs.filter(tags={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        load(tmp_path, tags={"dataset": None})  # type: ignore[dict-item]
