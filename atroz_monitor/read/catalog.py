"""The catalog: each finished run of a log directory summarised once.

History (trends, anomalies, baselines, the ETA's medians, live alert thresholds), ``serve``
and ``/metrics`` need a few figures per earlier run, never its samples. Re-reading and
reducing every earlier log for them made a run start, a request or a scrape cost more with
every run kept (issue 13). The catalog keeps those figures, ``summarize(run)``, per log.

Design
------
* **The logs stay the only source of truth.** The catalog is a cache: one file,
  ``<dir>/.atroz-catalog`` (not a ``*.jsonl`` name, so no reader takes it for a log). Each
  entry describes one *unit* (a log and its rotated parts, ``x.jsonl``, ``x.part2.jsonl``,
  ...) by its files' (name, size, mtime_ns) and holds the summaries of the runs in it. An
  entry whose files changed is stale; a log without an entry is missing; both are
  summarised again from the log. An entry whose log is gone is dropped.
* **Every line is checksummed** (``<crc32 hex> <light json>\t<full json>``: the light
  part, each run's status and per-key durations, is all a run start parses) and the file
  starts with a header carrying the format version. A torn, half-written, corrupt or
  foreign line fails its checksum and is ignored (its log is summarised again); a wrong
  header discards the file. Nothing in the catalog is trusted without its checksum.
* **Writers append, readers compact.** A ``Monitor`` appends its run's summary line when the
  run ends (``record``: one ``os.write`` on an ``O_APPEND`` descriptor, led by a newline so a
  torn line before it cannot swallow it). A full ``refresh()`` (``serve``, ``report``,
  ``prune``) reconciles the catalog with the directory and, when anything changed, rewrites
  it whole: a temporary file created with ``O_EXCL``, written, ``fsync``-ed and renamed over
  the catalog (atomic on POSIX and NFS). A crash leaves either the old or the new file,
  never a mix (and a temporary file, removed by a later refresh once an hour old).
  Several hosts may write one shared directory at once: an append lost to a
  concurrent rename, or mangled by NFS's non-atomic appends, only leaves a log without a
  valid entry, which the next refresh summarises again. Readers never lock.
* **Bounded cost.** ``refresh()`` with nothing changed costs one directory listing and one
  ``stat`` per log (the catalog file is re-read only when it changed). ``recent(limit)``,
  used at a run's start, reads only the catalog's tail (at most ``limit`` entries and a byte
  cap) and ``stat``-s those entries' files: a run start costs the same with 10,000 earlier
  runs as with none. It never reduces a log, except in a directory of at most
  ``SMALL_DIR`` logs that has no catalog yet (the first runs after an upgrade).
* **Private files.** The catalog and its temporary files are created ``0600`` and opened
  with ``O_NOFOLLOW``: a link planted under the catalog's name is refused, not followed.
* A run that has not ended is summarised too (status ``running``) but is left out of
  ``summaries()`` until it is silent for ``stale_after`` seconds (then shown
  ``interrupted``, as the views judge a silent run), so history sees crashed runs and never a
  live one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeGuard

from ..events import items_per_s, phase_errors
from .state import RunState, State, error_count

FILE = ".atroz-catalog"
FORMAT = 1
SMALL_DIR = 64
"""A directory without a catalog and at most this many logs is catalogued at a run start."""
RECENT_BYTES = 8 * 1024 * 1024
"""Most bytes ``recent`` reads from the catalog's tail."""
MAX_ALERTS = 50
"""Alerts kept per run summary (the latest state of each; the log has all)."""
STALE_AFTER_S = 60.0
OPEN_RESCAN_S = 30.0
"""A log holding a run without ``run_end`` is read again at most this often by a refresh."""

_SUFFIXES = (".jsonl", ".jsonl.gz")
_PART_RE = re.compile(r"^(?P<base>.+)\.part(?P<n>[0-9]+)\.jsonl(?:\.gz)?$")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_APPEND_FLAGS = (
    os.O_WRONLY
    | os.O_APPEND
    | os.O_CREAT
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)
_TMP_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)

# test hook: how many logs were reduced into summaries by this process (tests assert a run
# start reduces none).
reduced_logs = 0


# -- summaries ------------------------------------------------------------------------------


def _key_status(agg: Any) -> str:
    if agg.failed:
        return "failed"
    if agg.cancelled:
        return "cancelled"
    if agg.timed == 0:
        return "skipped" if agg.skipped else "cached"
    return "completed"  # skipped or cached repeats beside completed ones do not count


def summarize(run: RunState, files: Sequence[str] = ()) -> dict[str, Any]:
    """The small summary of one run (no samples): pure, JSON-ready.

    ``phases`` has one entry per phase key that ended in the run, from the run's per-key
    aggregate (so folded repeats count exactly): ``duration_ms`` and ``cpu_ms`` are means
    per occurrence that ran (skipped and cached ones have none), as history compares them;
    ``total_ms`` and ``timed`` give the sums back. ``status`` is the run's as the log says
    (``running`` without ``run_end``; the catalog and the views judge liveness).
    """
    r = run
    plan = r.info.get("plan")
    phases = _phase_rows(r, plan)
    start = r.start if r.start is not None else r.first_ts
    end = r.end
    dur = r.end_info.get("duration_ms")
    if not isinstance(dur, (int, float)) or isinstance(dur, bool):
        dur = round((end - start) * 1000.0, 3) if end is not None and start is not None else None
    name = r.info.get("name")
    host = r.info.get("host")
    tags = r.info.get("tags")
    alerts = sorted(r.alerts.values(), key=lambda a: a.get("raised_ts") or 0)[-MAX_ALERTS:]
    plan_keys = (
        [i["id"] for i in plan if isinstance(i, dict) and isinstance(i.get("id"), str)]
        if isinstance(plan, list)
        else []
    )
    return {
        "run": r.id,
        "name": name if isinstance(name, str) else None,
        "status": r.status if r.end is not None else "running",
        "ended": r.end is not None,
        "start": start,
        "end": end,
        "last_ts": r.last_ts,
        "duration_ms": dur,
        "host": host if isinstance(host, str) else None,
        "tags": clean_tags(tags),
        "files": list(files),
        "plan": plan_keys,
        "phases": Phases(phases),
        "alerts": alerts,
        "errors": error_count(r),  # the one count every surface shows
        "errors_logged": r.log_counts.get("error", 0),
        "warnings": r.log_counts.get("warning", 0),
        "peak_rss_bytes": r.peak_rss_bytes,
        "events": r.events,
        "seq_gaps": r.seq_gaps,
    }


def _phase_rows(r: RunState, plan: Any) -> dict[str, list[Any]]:
    """One stored row per phase key that ended in the run (``_RAW`` order): in start
    order, then keys known only from aggregates (folded, compacted)."""
    names, top, extra = _key_extras(r)
    if isinstance(plan, list):
        for item in plan:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                nm = item.get("name")
                if isinstance(nm, str):
                    names.setdefault(item["id"], nm)
    phases: dict[str, list[Any]] = {}
    top.update(r.folded)  # folded top-level repeats
    # In start order (records), then keys known only from aggregates (folded, compacted).
    for key in [*names, *r.keys]:
        agg = r.keys.get(key)
        if agg is None or agg.count == 0 or key in phases:
            continue
        timed = agg.timed
        e = extra.get(key) or [0, 0, 0.0, 0]
        nm = names.get(key, key)
        phases[key] = [
            None if nm == key else nm,
            _key_status(agg),
            agg.count,
            timed,
            agg.completed,
            agg.failed,
            agg.cancelled,
            1 if key in top or not r.phases else 0,
            round(agg.total_ms, 3),
            agg.min_ms,
            agg.max_ms,
            round(agg.cpu_ms, 3),
            round(e[2] / e[3], 3) if e[3] else None,
            agg.peak_rss_bytes,
            agg.items,
            int(e[0]),
            int(e[1]),
        ]
    return phases


def _key_extras(r: RunState) -> tuple[dict[str, str], set[str], dict[str, list[float]]]:
    """From the phase records: each key's first name, the top-level keys, and per key the
    sums the aggregate lacks: [errors, warnings, children_cpu_ms, records with it]."""
    names: dict[str, str] = {}
    top: set[str] = set()
    extra: dict[str, list[float]] = {}  # key -> [errors, warnings, children_cpu_ms, n_ccpu]
    for rec in r.phases.values():
        names.setdefault(rec.phase, rec.name)
        if rec.parent is None:
            top.add(rec.phase)
        if rec.end is None:
            continue
        e = extra.get(rec.phase)
        if e is None:
            e = extra[rec.phase] = [0, 0, 0.0, 0]
        e[0] += phase_errors(rec.errors, rec.status)  # its exception counts, as everywhere
        e[1] += rec.warnings
        if rec.children_cpu_ms is not None:
            e[2] += rec.children_cpu_ms
            e[3] += 1
    return names, top, extra


def pipeline(s: Mapping[str, Any]) -> str:
    """The pipeline a run belongs to: its name, or "" for a run named after its own id (a
    ``Monitor`` without ``name=``), so unnamed runs form one group, not one each."""
    name = s.get("name")
    return name if isinstance(name, str) and name != s.get("run") else ""


# A phase's figures as stored: one JSON array per key, in this order (a third of the bytes
# of an object, and no per-key dict held per run in memory: 10,000 runs of 20 keys are
# ~50 MB as arrays, ~115 MB as dicts).
_RAW = (
    "name", "status", "count", "timed", "completed", "failed", "cancelled", "top",
    "total_ms", "min_ms", "max_ms", "total_cpu_ms", "children_cpu_ms", "peak_rss_bytes",
    "items", "errors", "warnings",
)  # fmt: skip
_NRAW = len(_RAW)


def _expand(key: str, raw: Sequence[Any]) -> dict[str, Any]:
    """One phase key's figures as a dict (the means and rates derived from the sums)."""
    d = dict(zip(_RAW, raw, strict=False))
    if d.get("name") is None:
        d["name"] = key
    d["top"] = bool(d.get("top"))
    d["duration_ms"], d["cpu_ms"], d["items_per_s"] = _derived(
        d.get("timed") or 0, d.get("total_ms") or 0.0, d.get("total_cpu_ms") or 0.0,
        d.get("items") or 0,
    )  # fmt: skip
    return d


def _derived(timed: Any, total: Any, cpu: Any, items: Any) -> tuple[Any, Any, Any]:
    """(duration_ms, cpu_ms, items_per_s) of a key from its sums: means per occurrence that
    ran, and the rate. The one home of these figures (``_expand``, ``figures``)."""
    return (
        round(total / timed, 3) if timed else None,
        round(cpu / timed, 3) if timed else None,
        items_per_s(items, total),  # the one rate (a subnormal total gives None)
    )


def figures(raw: Sequence[Any]) -> tuple[Any, Any, Any, Any, Any, Any]:
    """(status, count, duration_ms, cpu_ms, peak_rss_bytes, items_per_s) of one key's
    compact array, as ``Phases[key]`` gives them but without building its dict (what
    ``history.Index`` folds per run and key)."""
    n = len(raw)
    dur, cpu, ips = _derived(
        (raw[3] if n > 3 else None) or 0, (raw[8] if n > 8 else None) or 0.0,
        (raw[11] if n > 11 else None) or 0.0, (raw[14] if n > 14 else None) or 0,
    )  # fmt: skip
    return (
        raw[1] if n > 1 else None,
        raw[2] if n > 2 else None,
        dur,
        cpu,
        raw[13] if n > 13 else None,
        ips,
    )


class Phases(Mapping[str, dict[str, Any]]):
    """A summary's ``phases``: read-only, ``{key: {name, status, count, timed, completed,
    failed, cancelled, top, duration_ms, total_ms, min_ms, max_ms, cpu_ms, total_cpu_ms,
    children_cpu_ms, peak_rss_bytes, items, items_per_s, errors, warnings}}``.

    Each value is built on access from a compact array (so hold on to it if read often);
    ``plain()`` gives a real dict for ``json.dumps``."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Sequence[Any]]) -> None:
        self.raw = raw

    def __getitem__(self, key: str) -> dict[str, Any]:
        return _expand(key, self.raw[key])

    def __iter__(self) -> Any:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"Phases({self.plain()!r})"

    def plain(self) -> dict[str, dict[str, Any]]:
        return {k: _expand(k, v) for k, v in self.raw.items()}

    def totals(self) -> Iterator[tuple[str, int, int, float]]:
        """(key, count, timed, total_ms) of each key, without building a dict per key (what
        the all-runs summary adds up over 10,000 runs)."""
        for k, v in self.raw.items():
            if len(v) > 8:
                yield k, v[2] or 0, v[3] or 0, v[8] or 0.0

    def completed_ms(self) -> Iterator[tuple[str, float]]:
        """(key, mean duration per occurrence) of each key whose status is completed,
        without building a dict per key (what thresholds and the ETA need)."""
        for k, v in self.raw.items():
            if len(v) > 8 and v[1] == "completed" and v[3]:
                yield k, round(v[8] / v[3], 3)


def plain(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A summary as plain JSON-ready dicts (its ``phases`` expanded)."""
    out = dict(summary)
    ph = out.get("phases")
    if isinstance(ph, Phases):
        out["phases"] = ph.plain()
    return out


def _default(o: Any) -> Any:
    if isinstance(o, Phases):
        return o.raw
    return repr(o)


def clean_tags(raw: Any) -> dict[str, str]:
    """Tags as history compares them: string keys; numbers and booleans as their JSON."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(k, str):
            continue
        if isinstance(v, str):
            out[k] = v
        elif isinstance(v, (int, float, bool)):
            out[k] = json.dumps(v)
    return out


def summarize_state(state: State, *, exclude: str | None = None) -> list[dict[str, Any]]:
    """Summaries of every run of a state (but ``exclude``), oldest first by start."""
    out = [summarize(r) for rid, r in state.runs.items() if rid != exclude]
    out.sort(key=start_of)
    return out


def start_of(s: Mapping[str, Any]) -> float:
    v = s.get("start")
    return float(v) if isinstance(v, (int, float)) else 0.0


def summarize_files(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Read logs (one unit: a log and its parts) and summarise each run in them."""
    global reduced_logs
    from . import reader
    from . import state as S

    st = State(max_samples=1, max_logs=1, max_artifacts=1)
    for p in paths:
        reduced_logs += 1
        try:
            S.apply_all(st, reader.iter_events(p))
        except FileNotFoundError:
            continue
    names = [os.path.basename(p) for p in paths]
    return [summarize(r, names) for r in st.runs.values()]


# -- lines ----------------------------------------------------------------------------------


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_default).encode()


def encode(obj: Mapping[str, Any], light: Mapping[str, Any] | None = None) -> bytes:
    """One catalog line: the CRC-32 of the rest, a space, the JSON text, a newline. With
    ``light``, its JSON text and a tab come first (compact JSON has no raw tab), so a
    reader that needs only the light part parses only it."""
    data = _dumps(obj)
    if light is not None:
        data = _dumps(light) + b"\t" + data
    return b"%08x %s\n" % (zlib.crc32(data), data)


def decode(line: bytes, light: bool = False) -> Any:
    """The object of a line written by ``encode`` (``light``: its light part, if it has
    one), or None if the checksum fails: nothing unchecked is ever parsed."""
    line = line.rstrip(b"\n")
    if len(line) < 10 or line[8:9] != b" ":
        return None
    data = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(data):
            return None
        tab = data.find(b"\t")
        if tab >= 0:
            data = data[:tab] if light else data[tab + 1 :]
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


_LIGHT_FIELDS = ("run", "name", "status", "ended", "start", "end", "last_ts", "tags")
_LIGHT_RAW = _RAW.index("total_ms") + 1  # name .. total_ms: status, counts and the duration


def _light(ent: Mapping[str, Any]) -> dict[str, Any]:
    """What a run start needs of an entry (``recent``): each run's status and per-key
    counts and durations, a tenth of the full entry."""
    runs = []
    for s in ent["runs"]:
        ph = s.get("phases")
        raw = ph.raw if isinstance(ph, Phases) else {}
        light = {k: s.get(k) for k in _LIGHT_FIELDS}
        light["phases"] = {k: list(v[:_LIGHT_RAW]) for k, v in raw.items()}
        runs.append(light)
    return {"f": ent["f"], "sig": ent["sig"], "runs": runs}


def encode_entry(ent: Mapping[str, Any]) -> bytes:
    return encode(ent, _light(ent))


def _header() -> bytes:
    return encode({"catalog": FORMAT})


def valid_entry(obj: Any) -> TypeGuard[dict[str, Any]]:
    """A well-formed entry (its summaries' ``phases`` wrapped as ``Phases`` on the way)."""
    if not (
        isinstance(obj, dict)
        and isinstance(obj.get("f"), str)
        and isinstance(obj.get("sig"), list)
        and isinstance(obj.get("runs"), list)
    ):
        return False
    for s in obj["runs"]:
        if not (isinstance(s, dict) and isinstance(s.get("run"), str)):
            return False
        ph = s.get("phases")
        if isinstance(ph, dict):
            if not all(isinstance(v, list) for v in ph.values()):
                return False
            s["phases"] = Phases(ph)
        elif not isinstance(ph, Phases):
            return False
    return True


# -- the directory --------------------------------------------------------------------------


def units(names: Iterable[str]) -> dict[str, list[str]]:
    """Log names grouped by unit: base name -> [base, part2, part3, ...] (parts whose base
    is absent are units of their own)."""
    names = sorted(names)
    present = set(names)
    out: dict[str, list[str]] = {}
    parts: list[tuple[str, int, str]] = []
    for n in names:
        m = _PART_RE.match(n)
        if m is not None:
            base = m.group("base")
            for cand in (base + ".jsonl", base + ".jsonl.gz"):
                if cand in present:
                    parts.append((cand, int(m.group("n")), n))
                    break
            else:
                out[n] = [n]
        else:
            out[n] = [n]
    parts.sort()
    for base, _, n in parts:
        out[base].append(n)
    return out


def unit_sig(directory: str, files: Sequence[str]) -> list[list[Any]] | None:
    out: list[list[Any]] = []
    for n in files:
        try:
            st = os.stat(os.path.join(directory, n))
        except OSError:
            return None
        out.append([n, st.st_size, st.st_mtime_ns])
    return out


class Catalog:
    """The summaries of the runs of one log directory (see the module docstring).

    Cheap to construct: nothing is read until ``refresh``, ``summaries``, ``summary`` or
    ``recent`` is called. Not thread-safe: share one per thread, or guard it.
    """

    def __init__(self, directory: str | os.PathLike[str], *, stale_after: float = STALE_AFTER_S):
        self.directory = os.path.abspath(os.fspath(directory))
        self.path = os.path.join(self.directory, FILE)
        self.stale_after = stale_after
        self.open_rescan = OPEN_RESCAN_S
        self._read_at: dict[str, float] = {}  # unit -> when this object last read it
        self._copies: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._entries: dict[str, dict[str, Any]] = {}  # unit base name -> entry
        self._file_sig: tuple[int, int, int] | None = None  # the catalog file as last read
        self._loaded = False
        self._dirty = False  # the file must be rewritten (missing, bad header, bad lines)
        self._runs: list[dict[str, Any]] | None = None  # merged, sorted; None = rebuild
        self._by_id: dict[str, dict[str, Any]] = {}
        self.bad_lines = 0  # lines of the catalog file that failed their checksum (last read)
        self.rebuilt = 0  # logs summarised again by this object
        self.writes = 0  # times this object rewrote the catalog file
        self.write_error: str | None = None

    # -- reading the file ---------------------------------------------------------------
    def _read_file(self) -> tuple[dict[str, dict[str, Any]], int, bool] | None:
        """Entries of the catalog file, bad line count, and whether the header was valid;
        None when there is no catalog file (or it is not a regular file)."""
        try:
            fd = os.open(self.path, _OPEN_FLAGS | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            import stat as _stat

            if not _stat.S_ISREG(st.st_mode):
                return None
            chunks = []
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
            self._file_sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            return None
        finally:
            os.close(fd)
        data = b"".join(chunks)
        lines = data.split(b"\n")
        entries: dict[str, dict[str, Any]] = {}
        bad = 0
        head = decode(lines[0]) if lines else None
        if not (isinstance(head, dict) and head.get("catalog") == FORMAT):
            return {}, len([x for x in lines if x]), False
        for line in lines[1:]:
            if not line:
                continue
            obj = decode(line)
            if not valid_entry(obj):
                bad += 1
                continue
            entries[obj["f"]] = obj
        return entries, bad, True

    def _ensure_loaded(self) -> bool:
        """Read the catalog file if it changed since it was last read; whether it must be
        rewritten (missing, bad header or bad lines)."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
            cur = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            cur = None
        if self._loaded and cur is not None and cur == self._file_sig:
            return self._dirty
        got = self._read_file()
        self._loaded = True
        self._runs = None
        if got is None:
            self._file_sig = None
            self.bad_lines = 0
            self._dirty = True
            return True
        entries, bad, ok = got
        # Entries summarised in memory but not (yet) in the file are kept: they are valid.
        merged = dict(self._entries)
        merged.update(entries)
        self._entries = merged
        self.bad_lines = bad
        self._dirty = bad > 0 or not ok
        return self._dirty

    # -- public ---------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Reconcile the catalog with the directory: summarise logs that have no valid or
        current entry, drop entries whose logs are gone, and rewrite the file when anything
        changed (or it was missing, torn or corrupt). Returns whether the summaries changed.
        Never raises for a catalog it cannot write (a read-only directory): the summaries
        then live in this object only (``write_error`` says why)."""
        dirty = self._ensure_loaded()
        names: list[str] = []
        stale_tmp: list[str] = []
        try:
            with os.scandir(self.directory) as it:
                for e in it:
                    if e.name.endswith(_SUFFIXES):
                        if _regular(e):
                            names.append(e.name)
                    elif e.name.startswith(_TMP_PREFIX):
                        stale_tmp.append(e.path)
        except FileNotFoundError:
            pass
        _remove_stale(stale_tmp)
        groups = units(names)
        changed = False
        now = time.time()
        for base in list(self._entries):
            if base not in groups:
                del self._entries[base]
                changed = True
        for base, files in groups.items():
            sig = unit_sig(self.directory, files)
            if sig is None:
                continue  # vanished while listing: the next refresh sees it
            ent = self._entries.get(base)
            if ent is not None and ent.get("sig") == sig:
                continue
            if ent is not None and _growing(ent, self._read_at.get(base), now, self.open_rescan):
                continue  # a run still being written: read again once per open_rescan s
            runs = summarize_files([os.path.join(self.directory, f) for f in files])
            self.rebuilt += 1
            # Signature taken before reading: a log that grew meanwhile is stale next time.
            self._entries[base] = {"f": base, "sig": sig, "runs": runs}
            self._read_at[base] = now
            changed = True
        if changed:
            self._runs = None
        if changed or (dirty and (self._entries or self._file_sig is not None)):
            self._write()  # (a directory without logs or catalog is left without one)
        return changed

    def summaries(
        self, *, include_open: bool = False, now: float | None = None, refresh: bool = True
    ) -> list[dict[str, Any]]:
        """Summaries of the directory's runs, oldest first by start (refreshed first).

        Runs that have not ended are left out while their last event is less than
        ``stale_after`` seconds old (``include_open``: kept, status ``running``); older
        ones are shown ``interrupted``. Treat the dicts as read-only: they are shared.
        ``refresh=False``: the list as of the last refresh (no I/O once loaded)."""
        if refresh or not self._loaded:
            self.refresh()
        return self._view(include_open, now)

    def summary(self, run_id: str) -> dict[str, Any] | None:
        """One run's summary (whatever its status), or None."""
        self.refresh()
        self._merged()
        return self._by_id.get(run_id)

    def recent(
        self, limit: int = 200, *, exclude: str | None = None, now: float | None = None
    ) -> list[dict[str, Any]]:
        """The summaries of the latest ``limit`` runs the catalog holds, oldest first, read
        from the catalog's tail only: no directory listing, no log read (except the first
        cataloguing of a directory of at most ``SMALL_DIR`` logs). Entries whose logs
        changed or vanished are left out. For a run start: bounded whatever the history."""
        if not os.path.lexists(self.path):
            if _small_dir(self.directory):
                out = [s for s in self.summaries(now=now) if s["run"] != exclude]
                return out[-limit:]
            return []
        entries = self._tail_entries(limit)
        picked: list[dict[str, Any]] = []
        for ent in entries:
            files = [f[0] for f in ent["sig"] if isinstance(f, list) and f]
            if unit_sig(self.directory, files) != ent["sig"]:
                continue
            picked.extend(s for s in ent["runs"] if s.get("run") != exclude)
        return _judge(sorted(picked, key=start_of), False, now, self.stale_after)[-limit:]

    def record(
        self, log_path: str | os.PathLike[str], summaries: Sequence[Mapping[str, Any]]
    ) -> None:
        """Append the entry of one log (its current signature and ``summaries``) to the
        catalog: what a writer does when its run ends. Raises OSError (callers count it)."""
        p = os.path.abspath(os.fspath(log_path))
        if os.path.dirname(p) != self.directory:
            return
        base = os.path.basename(p)
        files = units(n for n in _listed_parts(self.directory, base) if n.endswith(_SUFFIXES)).get(
            base, [base]
        )
        sig = unit_sig(self.directory, files)
        if sig is None:
            return
        ent = {"f": base, "sig": sig, "runs": [dict(s, files=files) for s in summaries]}
        line = encode_entry(ent)
        fd = os.open(self.path, _APPEND_FLAGS, 0o600)
        try:
            if os.fstat(fd).st_size == 0:
                line = _header() + line
            else:
                line = b"\n" + line  # a torn line before this one cannot swallow it
            os.write(fd, line)
        finally:
            os.close(fd)
        if self._loaded:
            self._entries[base] = ent
            self._runs = None

    def forget(self, log_names: Iterable[str]) -> None:
        """Drop the entries of logs (base names) that were removed, and rewrite the file."""
        self._ensure_loaded()
        for n in log_names:
            self._entries.pop(os.path.basename(n), None)
        self._runs = None
        self._write()

    def moved(self, old: str, new: str) -> None:
        """A log renamed without a change of content (``old`` compressed to ``new``): its
        entry follows it, so the compressed log is not read again. Rewrites the file."""
        self._ensure_loaded()
        ent = self._entries.pop(old, None)
        if ent is None:
            return
        sig = unit_sig(self.directory, [new])
        if sig is not None and len(ent["sig"]) == 1:
            runs = [dict(s, files=[new]) for s in ent["runs"]]
            self._entries[new] = {"f": new, "sig": sig, "runs": runs}
        self._runs = None
        self._write()

    # -- internals ----------------------------------------------------------------------
    def _merged(self) -> list[dict[str, Any]]:
        runs = self._runs
        if runs is not None:
            return runs
        by_id: dict[str, dict[str, Any]] = {}
        split: dict[str, list[str]] = {}
        for ent in self._entries.values():
            for s in ent["runs"]:
                rid = s["run"]
                if rid in by_id:
                    split.setdefault(rid, list(by_id[rid].get("files") or []))
                    split[rid].extend(s.get("files") or [])
                else:
                    by_id[rid] = s
        # A run whose events are in several unrelated logs: summarised from all of them.
        for rid, files in split.items():
            paths = sorted({os.path.join(self.directory, f) for f in files})
            for s in summarize_files(paths):
                if s["run"] == rid:
                    by_id[rid] = s
        self._by_id = by_id
        self._runs = runs = sorted(by_id.values(), key=start_of)
        return runs

    def _view(self, include_open: bool, now: float | None) -> list[dict[str, Any]]:
        runs = self._merged()
        if len(self._copies) > 2 * len(runs):
            self._copies.clear()  # copies of summaries long replaced
        return _judge(runs, include_open, now, self.stale_after, self._copies)

    def _tail_entries(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` valid entries from the end of the catalog file (newest last)."""
        try:
            fd = os.open(self.path, _OPEN_FLAGS | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return []
        try:
            import stat as _stat

            st = os.fstat(fd)
            if not _stat.S_ISREG(st.st_mode):
                return []
            head = os.pread(fd, 4096, 0).split(b"\n", 1)[0]
            h = decode(head)
            if not (isinstance(h, dict) and h.get("catalog") == FORMAT):
                return []
            size = st.st_size
            pos = size
            buf = b""
            found: dict[str, dict[str, Any]] = {}
            order: list[str] = []
            step = 64 * 1024
            while pos > 0 and len(found) < limit and size - pos < RECENT_BYTES:
                n = min(step, pos)
                pos -= n
                buf = os.pread(fd, n, pos) + buf
                lines = buf.split(b"\n")
                buf = lines[0] if pos > 0 else b""
                for line in reversed(lines[1:] if pos > 0 else lines):
                    obj = decode(line, light=True) if line else None
                    if valid_entry(obj) and obj["f"] not in found:
                        found[obj["f"]] = obj
                        order.append(obj["f"])
                        if len(found) >= limit:
                            break
        except OSError:
            return []
        finally:
            os.close(fd)
        return [found[f] for f in reversed(order)]

    def _write(self) -> None:
        """Rewrite the catalog whole: O_EXCL temporary, fsync, rename (atomic)."""
        ents = sorted(
            self._entries.values(),
            key=lambda e: min((start_of(s) for s in e["runs"]), default=0.0),
        )
        tmp = os.path.join(self.directory, f"{_TMP_PREFIX}{os.getpid()}.{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, _TMP_FLAGS, 0o600)
        except OSError as exc:
            self.write_error = f"{type(exc).__name__}: {exc}"
            return
        try:
            try:
                chunks = [_header()]
                chunks.extend(encode_entry(e) for e in ents)
                data = b"".join(chunks)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            st = os.stat(self.path, follow_symlinks=False)
            self._file_sig = (st.st_ino, st.st_size, st.st_mtime_ns)
            self._dirty = False
            self.writes += 1
            self.write_error = None
        except OSError as exc:
            self.write_error = f"{type(exc).__name__}: {exc}"
            try:
                os.unlink(tmp)
            except OSError:
                pass


_TMP_PREFIX = FILE + ".tmp."
TMP_STALE_S = 3600.0
"""A temporary catalog older than this was left by a writer that died: removed."""


def _remove_stale(paths: Sequence[str]) -> None:
    now = time.time()
    for p in paths:
        try:
            st = os.stat(p, follow_symlinks=False)
            if now - st.st_mtime > TMP_STALE_S:
                os.unlink(p)
        except OSError:
            pass  # gone already, or not ours to remove


def _growing(ent: Mapping[str, Any], at: float | None, now: float, window: float) -> bool:
    """Whether an entry holds a run without ``run_end`` that this object read less than
    ``window`` seconds ago (``at``): its log grows with every event, and reading it whole
    on every refresh would make a live run cost a full read per refresh. Its writer's
    ``run_end`` entry (or the next read after ``window``) brings it up to date. Only this
    object's own reads count: an entry from the file is never trusted to be recent."""
    if at is None or now - at >= window:
        return False
    return any(not s.get("ended", True) for s in ent["runs"])


def _regular(e: os.DirEntry[str]) -> bool:
    try:
        return e.is_file()
    except OSError:
        return False


def _small_dir(directory: str) -> bool:
    n = 0
    try:
        with os.scandir(directory) as it:
            for e in it:
                if e.name.endswith(_SUFFIXES):
                    n += 1
                    if n > SMALL_DIR:
                        return False
    except OSError:
        return False
    return True


def _listed_parts(directory: str, base: str) -> list[str]:
    """``base`` and its rotated parts present in ``directory`` (without listing it)."""
    from .reader import parts_of

    return [base] + [os.path.basename(p) for p in parts_of(os.path.join(directory, base))]


def _judge(
    runs: Sequence[dict[str, Any]],
    include_open: bool,
    now: float | None,
    stale_after: float,
    copies: dict[int, tuple[dict[str, Any], dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Runs without ``run_end``: left out (or kept as running) while recent, else
    ``interrupted`` (a copy; the cached summary stays as the log says). ``copies`` keeps
    each copy for as long as its summary lives, so the same runs give the same objects
    (what ``/metrics`` caches its history index by)."""
    now = time.time() if now is None else now
    out: list[dict[str, Any]] = []
    for s in runs:
        if s.get("ended", True):
            out.append(s)
            continue
        last = s.get("last_ts")
        silent = not isinstance(last, (int, float)) or now - last > stale_after
        if silent:
            hit = copies.get(id(s)) if copies is not None else None
            if hit is None or hit[0] is not s:
                hit = (s, {**s, "status": "interrupted"})
                if copies is not None:
                    copies[id(s)] = hit
            out.append(hit[1])
        elif include_open:
            out.append(s)
    return out


__all__ = [
    "Catalog",
    "FILE",
    "decode",
    "encode",
    "Phases",
    "pipeline",
    "plain",
    "start_of",
    "summarize",
    "summarize_files",
    "summarize_state",
    "units",
]
