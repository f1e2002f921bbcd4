"""``python -m atroz_monitor demo``: a realistic simulated document-analysis pipeline.

Ten phases, P00 to P09, each with sub-phases, real CPU work and real memory allocation (so
the samples show the shape of each phase), a worker pool whose processes join the run,
items and throughput, artifacts, custom metrics, warnings, and optionally a failure.
Each phase works for its share of ``--duration`` seconds, so the run takes about that long
on any machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from typing import Any

from ..record.monitor import Monitor

PLAN: list[tuple[str, str, float]] = [
    ("P00", "Document Assembly", 0.06),
    ("P01", "Text Extraction", 0.12),
    ("P02", "Normalization", 0.08),
    ("P03", "Entity Recognition", 0.18),
    ("P04", "Signal Detection", 0.12),
    ("P05", "Cross-Referencing", 0.10),
    ("P06", "Scoring", 0.09),
    ("P07", "Validation", 0.08),
    ("P08", "Report Generation", 0.10),
    ("P09", "Archival", 0.07),
]

log = logging.getLogger("atroz_monitor.commands.demo")


class DemoFailure(RuntimeError):
    """The failure ``--fail PHASE`` injects."""


def _burn(seconds: float, chunk: bytes = b"atroz" * 200) -> int:
    """Real CPU work for about ``seconds``: hashing, the way parsers and scorers spend it."""
    end = time.perf_counter() + seconds
    n = 0
    h = hashlib.sha256()
    while time.perf_counter() < end:
        # Short steps (20 KB): a short phase, or a loaded machine, does not stretch a phase
        # by its last step, so the phases keep their proportions at any --duration.
        for _ in range(20):
            h.update(chunk)
        n += 1
    return n


def _docs(n: int, size: int = 2048) -> list[bytes]:
    return [os.urandom(size) for _ in range(n)]


def _ner_chunk(args: tuple[int, int, float, str | None]) -> dict[str, Any]:
    """Worker-pool task: runs in another process, which joins the run through the
    environment and records its own phase under the parent's span."""
    index, ndocs, seconds, parent = args
    import atroz_monitor

    with atroz_monitor.phase("P03.worker", f"NER chunk {index}", parent=parent) as p:
        entities = 0
        per_doc = seconds / max(ndocs, 1)
        for _ in range(ndocs):
            entities += _burn(per_doc) % 7 + 3
            p.add_items(1)
        p.metric("entities", entities)
    return {"chunk": index, "entities": entities, "pid": os.getpid()}


def _pool_context() -> Any:
    import multiprocessing as mp

    # fork is quick and shows forked workers joining; spawn (macOS, Windows) joins through
    # the environment instead.
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


# The simulated reference index of P05 grows by a batch with every earlier run in the demo's
# directory and is rebuilt every INDEX_CYCLE runs: after a few demos the trends, the heatmap
# and the suggestions have a slowing phase and a creeping memory peak to show.
INDEX_CYCLE = 8
INDEX_GROWTH = 0.15  # of P05's time budget, per batch
INDEX_BATCH_BYTES = 8 * 1024 * 1024


def run_pipeline(
    mon: Monitor, duration: float, fail: str | None, out_dir: str, runs_before: int = 0
) -> None:
    """The pipeline itself: what a user's code looks like with atroz_monitor.

    ``runs_before``: earlier runs in the demo's directory; P05's index holds that many
    batches (modulo ``INDEX_CYCLE``), each costing time and memory.
    """
    budget = {pid: duration * share for pid, _, share in PLAN}
    job = _Job(mon, budget, fail, out_dir, runs_before % INDEX_CYCLE)
    os.makedirs(out_dir, exist_ok=True)
    for step in _STEPS:
        step(job)


class _Job:
    """What the demo's phases share: the monitor, each phase's time budget, the documents,
    the memory the pipeline holds on to between phases, and which phase must fail."""

    def __init__(
        self, mon: Monitor, budget: dict[str, float], fail: str | None, out_dir: str, batches: int
    ) -> None:
        self.mon = mon
        self.budget = budget
        self.fail = fail
        self.out_dir = out_dir
        self.batches = batches
        self.docs: list[bytes] = []
        self.keep: list[bytearray] = []  # memory the pipeline holds on to between phases

    def maybe_fail(self, key: str) -> None:
        if self.fail == key:
            raise DemoFailure(f"{key}: validation rule R-17 rejected 3 of 120 documents")


def _assemble(job: _Job) -> None:
    """P00: Document Assembly."""
    mon = job.mon
    keep = job.keep
    out_dir = job.out_dir

    with mon.phase("P00", "Document Assembly") as p:
        t = job.budget["P00"]
        with mon.phase("P00.fetch", "Fetch sources") as s:
            docs = job.docs = _docs(120)
            s.add_items(len(docs))
            _burn(t * 0.4)
        with mon.phase("P00.merge", "Merge and deduplicate") as s:
            keep.append(bytearray(24 * 1024 * 1024))
            _burn(t * 0.5)
            s.add_items(len(docs))
        p.add_items(len(docs))
        p.metric("documents", len(docs))
        path = os.path.join(out_dir, "assembled.bin")
        with open(path, "wb") as f:
            f.write(b"".join(docs))
        p.artifact(path)
        job.maybe_fail("P00")


def _extract_text(job: _Job) -> None:
    """P01: Text Extraction."""
    mon = job.mon
    docs = job.docs
    keep = job.keep

    with mon.phase("P01", "Text Extraction") as p:
        t = job.budget["P01"]
        p.set_total(len(docs))
        with mon.phase("P01.ocr", "OCR"):
            for _ in docs:
                _burn(t * 0.6 / len(docs))
                p.add_items(1)
        with mon.phase("P01.layout", "Layout analysis"):
            keep.append(bytearray(32 * 1024 * 1024))
            _burn(t * 0.35)
        log.warning("P01: 2 documents had no text layer; OCR confidence below 0.6")
        job.maybe_fail("P01")


def _normalize(job: _Job) -> None:
    """P02: Normalization."""
    mon = job.mon
    docs = job.docs

    with mon.phase("P02", "Normalization") as p:
        t = job.budget["P02"]
        for sub, label in (("P02.unicode", "Unicode NFC"), ("P02.tokens", "Tokenize")):
            with mon.phase(sub, label) as s:
                _burn(t * 0.45)
                s.add_items(len(docs))
        p.add_items(len(docs))
        p.metric("tokens", 183_402)
        for i in (7, 42, 88):  # similar warnings: one error group of three on the page
            p.warning(f"doc {i}: replaced {i % 5 + 1} invalid UTF-8 sequences")
        job.maybe_fail("P02")


def _recognize_entities(job: _Job) -> None:
    """P03: Entity Recognition."""
    mon = job.mon
    docs = job.docs

    with mon.phase("P03", "Entity Recognition") as p:
        t = job.budget["P03"]
        chunks = 4
        per_chunk = len(docs) // chunks
        ctx = _pool_context()
        with mon.phase("P03.pool", "Worker pool"):
            with ctx.Pool(2) as pool:
                results = pool.map(
                    _ner_chunk,
                    [(i, per_chunk, t * 0.4 / 2, p.span) for i in range(chunks)],
                )
        entities = sum(r["entities"] for r in results)
        with mon.phase("P03.merge", "Merge entities") as s:
            _burn(t * 0.5)
            s.add_items(entities)
        p.add_items(len(docs))
        p.metric("entities", entities)
        p.metric("workers", len({r["pid"] for r in results}))
        job.maybe_fail("P03")


def _detect_signals(job: _Job) -> None:
    """P04: Signal Detection."""
    mon = job.mon
    docs = job.docs
    keep = job.keep

    with mon.phase("P04", "Signal Detection") as p:
        t = job.budget["P04"]
        with mon.phase("P04.features", "Feature extraction") as s:
            keep.append(bytearray(48 * 1024 * 1024))
            _burn(t * 0.5)
            s.add_items(len(docs))
        with mon.phase("P04.detect", "Detect signals") as s:
            _burn(t * 0.45)
            s.add_items(len(docs))
            for d in docs:
                s.count("signals", d[0] % 3)  # a counter: summed over the run, /metrics
        p.add_items(len(docs))
        p.metric("signals", 12)
        job.maybe_fail("P04")


def _cross_reference(job: _Job) -> None:
    """P05: Cross-Referencing."""
    mon = job.mon
    docs = job.docs
    batches = job.batches

    with mon.phase("P05", "Cross-Referencing") as p:
        t = job.budget["P05"]
        with mon.phase("P05.index", "Build index") as s:
            index = {hashlib.sha1(d[:64]).hexdigest(): i for i, d in enumerate(docs)}
            held = [bytearray(INDEX_BATCH_BYTES) for _ in range(batches)]
            _burn(t * (0.4 + INDEX_GROWTH * batches))
            s.metric("index_batches", batches)
            del held
        with mon.phase("P05.link", "Link references") as s:
            _burn(t * 0.55)
            s.add_items(len(index))
        p.add_items(len(docs))
        p.warning("P05: 4 references point to documents outside this batch")
        job.maybe_fail("P05")


def _score(job: _Job) -> None:
    """P06: Scoring."""
    mon = job.mon
    docs = job.docs
    keep = job.keep

    with mon.phase("P06", "Scoring") as p:
        t = job.budget["P06"]
        del keep[:2]  # the early buffers are released: RSS falls
        with mon.phase("P06.model", "Score documents") as s:
            for _ in range(len(docs)):
                _burn(t * 0.9 / len(docs))
                s.add_items(1)
        p.add_items(len(docs))
        p.metric("mean_score", 0.73)
        job.maybe_fail("P06")


def _validate(job: _Job) -> None:
    """P07: Validation."""
    mon = job.mon
    docs = job.docs

    with mon.phase("P07", "Validation") as p:
        t = job.budget["P07"]
        with mon.phase("P07.schema", "Schema checks"):
            _burn(t * 0.4)
        with mon.phase("P07.rules", "Business rules") as s:
            _burn(t * 0.5)
            s.add_items(len(docs))
            job.maybe_fail("P07")
        p.add_items(len(docs))


def _write_report(job: _Job) -> None:
    """P08: Report Generation."""
    mon = job.mon
    docs = job.docs
    out_dir = job.out_dir

    with mon.phase("P08", "Report Generation") as p:
        t = job.budget["P08"]
        with mon.phase("P08.render", "Render report"):
            _burn(t * 0.6)
        with mon.phase("P08.write", "Write outputs"):
            path = os.path.join(out_dir, "report.json")
            with open(path, "w") as out:
                json.dump({"documents": len(docs), "signals": 12}, out)
            p.artifact(path)
            _burn(t * 0.3)
        p.add_items(1)
        job.maybe_fail("P08")


def _archive(job: _Job) -> None:
    """P09: Archival."""
    mon = job.mon
    docs = job.docs
    keep = job.keep

    with mon.phase("P09", "Archival") as p:
        t = job.budget["P09"]
        keep.clear()
        with mon.phase("P09.compress", "Compress") as s:
            _burn(t * 0.6)
            s.add_items(len(docs))
        with mon.phase("P09.upload", "Upload"):
            time.sleep(t * 0.3)  # waiting on I/O: wall time without CPU
        p.add_items(len(docs))
        job.maybe_fail("P09")


_STEPS = (
    _assemble,
    _extract_text,
    _normalize,
    _recognize_entities,
    _detect_signals,
    _cross_reference,
    _score,
    _validate,
    _write_report,
    _archive,
)


def main(
    duration: float = 30.0,
    fail: str | None = None,
    out: str = "atroz-runs",
    interval: float = 0.1,
    serve: bool = False,
) -> int:
    """Run the demo pipeline; print the per-phase summary. Returns the exit code."""
    from ..read.loader import load_state
    from ..surface.report_text import phase_table

    runs_before = _earlier_runs(out)
    mon = Monitor(
        out,
        plan=[(pid, name) for pid, name, _ in PLAN],
        sample_interval=interval,
        name="demo: document analysis",
        meta={"pipeline": "document-analysis", "documents": 120, "duration_s": duration},
    )
    path = mon.main.path
    print(f"atroz_monitor demo: run {mon.run_id}, log {os.path.relpath(path)}", flush=True)
    server = _serve(mon) if serve else None
    if server is not None:
        print(f"live dashboard: {server.url}  (open it in a browser)", flush=True)
    status = 0
    try:
        with mon:
            run_pipeline(
                mon, duration, fail, os.path.join(out, mon.run_id + "-artifacts"), runs_before
            )
    except DemoFailure as exc:
        print(f"the pipeline failed as asked: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    # The summary is read back from the log, as `report` would: the file is the truth.
    st, stats = load_state([path])
    from ..view.views import snapshot

    snap = snapshot(st, mon.run_id, now=time.time(), quality=stats.to_dict())
    print(phase_table(snap, depth=0), flush=True)
    if runs_before:
        _print_insights(out, path, mon.run_id, runs_before)
    if server is not None:
        print(f"the run is over; still serving {server.url} (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    return status


def _recent_logs(out: str, own: str, n: int) -> list[str]:
    """The ``n`` newest other run logs of the directory (run ids start with their start time,
    so names sort by age; no log is read)."""
    try:
        with os.scandir(out) as it:
            names = sorted(
                e.name for e in it if e.name.endswith(".jsonl") and ".part" not in e.name
            )
    except OSError:
        return []
    paths = [os.path.join(out, name) for name in names]
    return [p for p in paths if os.path.abspath(p) != os.path.abspath(own)][-n:]


def _print_insights(out: str, path: str, run_id: str, runs_before: int) -> None:
    """The suggestions for this run against the latest earlier runs, after the summary."""
    from ..read.loader import load_state
    from ..surface.report_text import suggestion_lines
    from ..view import charts, suggestions
    from ..view.views import snapshot

    st, _ = load_state([*_recent_logs(out, path, suggestions.SLOW_WINDOW), path])
    if run_id not in st.runs:
        return
    rows = charts.rows_from_state(st, run_id, limit=suggestions.SLOW_WINDOW)
    items = suggestions.suggest(snapshot(st, run_id, now=time.time()), rows)
    print(
        f"history: {runs_before} earlier run(s) in {out}: trends, heatmap and suggestions on "
        "the page and in `report --format html`",
        flush=True,
    )
    print("\n".join(suggestion_lines(items)[1:]) if items else "suggestions: none", flush=True)


def _earlier_runs(out: str) -> int:
    """Run logs already in the demo's directory (names only: no log is read)."""
    try:
        with os.scandir(out) as it:
            return sum(1 for e in it if e.name.endswith((".jsonl", ".jsonl.gz")) and
                       ".part" not in e.name)  # fmt: skip
    except OSError:
        return 0


def _serve(mon: Monitor) -> Any:
    """The dashboard on 127.0.0.1:8765, or the next free port."""
    import errno

    last: OSError | None = None
    for port in range(8765, 8815):
        try:
            return mon.serve(port=port)
        except OSError as exc:
            last = exc
            if exc.errno != errno.EADDRINUSE:
                break
    print(f"cannot serve the dashboard ({last}); going on without it", file=sys.stderr)
    return None
