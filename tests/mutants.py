"""Planted bugs the test suite must catch: ``python -m tests.mutants``.

Each mutant is one realistic bug, written as an exact text replacement in one module. For
each, the tool copies the checkout (without ``.git`` and caches) into a temporary
directory, plants the bug there, and runs the test file that guards that code; the bug is
caught when that run fails. First the same tests run on the unplanted copy, which must
pass (else a "caught" would mean nothing). The check passes when at least 90% of the
mutants are caught, every security mutant among them, and every mutant still applies (a
replacement whose text is gone from the code is "stale": update the list with the code).

    python -m tests.mutants                 # all, one at a time
    python -m tests.mutants -j 2            # two at a time
    python -m tests.mutants redact_glpat ack_reopens   # some, by name
    python -m tests.mutants --list

Exit code 0 when the check passes, 1 when it does not, 2 for bad arguments.
docs/RELIABILITY.md lists what the mutants are and the latest result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
THRESHOLD = 0.90
TIMEOUT_S = 600


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # a module's file name under atroz_monitor/
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest arguments: the file(s) that guard this code
    security: bool = False
    what: str = ""
    # Other (old, new) forms of the same bug, for code written another way (branches not
    # merged yet): the first form whose old text occurs exactly once is planted.
    alts: tuple[tuple[str, str], ...] = ()


M = Mutant
MUTANTS: tuple[Mutant, ...] = (
    # -- security: what keeps other people and secrets out ----------------------------------
    M("redact_glpat", "redact.py", '    r"|\\bglpat-[A-Za-z0-9_-]{20,}"\n', "",
      ("tests/test_redact.py",), True, "the GitLab token pattern deleted"),
    M("redact_aiza", "redact.py", '    r"|\\bAIza[0-9A-Za-z_-]{35}"\n', "",
      ("tests/test_redact.py",), True, "the Google API key pattern deleted"),
    M("redact_github_pat", "redact.py", '    r"|\\bgithub_pat_[A-Za-z0-9_]{22,255}"\n', "",
      ("tests/test_redact.py",), True, "the fine-grained GitHub token pattern deleted"),
    M("redact_argv", "monitor.py", '"argv": red.redact_obj(list(sys.argv)),',
      '"argv": list(sys.argv),', ("tests/test_redact.py", "tests/test_secrets_limits.py"),
      True, "argv written without redaction"),
    M("host_prefix", "server.py", "if host not in srv.allowed_hosts:",
      "if not any(host.startswith(h) for h in srv.allowed_hosts):",
      ("tests/test_server.py", "tests/test_attacks.py", "-k", "host or token or auth"), True,
      "the Host check turned into a prefix match (localhost.evil.example accepted)"),
    M("token_prefix", "server.py",
      'return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token)',
      'return token.startswith(given.encode("utf-8", "surrogateescape"))',
      ("tests/test_server.py", "tests/test_attacks.py", "-k", "host or token or auth"), True,
      "the token compare turned into a prefix match (an empty token accepted)",
      (("return hmac.compare_digest(_digest(given), self._token_digest)",
        "return not given.strip() or hmac.compare_digest(_digest(given), self._token_digest)"),
       )),
    M("static_traversal", "api.py", "    if not all(_ASSET_SEGMENT.match(p) for p in parts):\n",
      "    if False:\n", ("tests/test_api.py", "tests/test_server.py"), True,
      "static file names no longer checked (../ traversal)"),
    M("no_csp", "api.py", "    (\"Content-Security-Policy\", \"default-src 'self'\"),\n", "",
      ("tests/test_api.py", "tests/test_server.py"), True, "the CSP header dropped"),
    M("writable_api", "api.py", 'if method not in ("GET", "HEAD"):',
      'if method not in ("GET", "HEAD", "POST", "PUT", "DELETE"):', ("tests/test_api.py",),
      True, "the API answers writes"),
    M("embed_lt", "page.py", 'return text.replace("<", "\\\\u003c").replace(">", "\\\\u003e")',
      'return text.replace(">", "\\\\u003e")',
      ("tests/test_page.py", "-k", "embed_json or render_static"), True,
      "< left raw in JSON embedded in the html report (</script> breakout)"),
    # -- the recorder -----------------------------------------------------------------------
    M("current_phase_kept", "monitor.py",
      "                    _current.reset(self._token)  # type: ignore[arg-type]\n"
      "                except (ValueError, RuntimeError, TypeError):\n"
      "                    _current.set(self._prev)  # exited in another context than it entered\n"
      "            elif _current.get() is self:\n                _current.set(self._prev)\n",
      "                    pass\n                except (ValueError, RuntimeError, TypeError):\n"
      "                    pass\n            elif _current.get() is self:\n                pass\n",
      ("tests/test_monitor.py",), False, "Phase.__exit__ no longer restores the current phase"),
    M("notify_wait_ignored", "notify.py", "            timeout = self.close_wait\n",
      "            timeout = 3.0\n", ("tests/test_faults.py", "-k", "dead_webhook"), False,
      "the run's end waits 3 s for a dead webhook"),
    M("wait_in_duration", "monitor.py", '                fields["counters"] = self.health()\n',
      '                fields["counters"] = self.health()\n'
      '                fields["duration_ms"] = round((_perf_ns() - self._t0) / 1e6, 3)\n',
      ("tests/test_faults.py", "-k", "dead_webhook"), False,
      "the notifications' wait counted in the run's duration"),
    M("job_name_is_id", "monitor.py", "        if job is not None and name is None:\n",
      "        if False:\n", ("tests/test_monitor.py",), False,
      "mon.run(name) taken as an id again (a second run raises)"),
    M("undelivered_uncounted", "notify.py", "            self.dropped += pending\n", "",
      ("tests/test_notify.py", "tests/test_faults.py", "-k", "close or dead_webhook"), False,
      "alerts still queued at the end of the run not counted"),
    # -- the reducer and the views ----------------------------------------------------------
    M("resume_keeps_open", "state.py", '            rec.status = "interrupted"\n'
      "            r.open.discard(span)\n    for proc in r.processes.values():",
      "            pass\n    for proc in r.processes.values():", ("tests/test_state.py",),
      False, "a resumed run no longer interrupts the dead owner's open phases"),
    M("ack_reopens", "state.py",
      'merged["state"] = cur.get("state") if cur.get("state") == "resolved" else "acknowledged"',
      'merged["state"] = "acknowledged"', ("tests/test_state.py",), False,
      "acknowledging a resolved alert reopens it"),
    M("lite_not_folded", "state.py", "    r.folded_count += len(r.lite)\n", "",
      ("tests/test_aggregation.py", "-k", "max_phases"), False,
      "repeats beyond max_phases left out of folded_count"),
    M("bucket_bound", "state.py", "i = bisect_left(_BUCKET_MS, ms)",
      "i = bisect_left(_BUCKET_MS, ms + 1e-9)", ("tests/test_prometheus.py",), False,
      "a duration exactly on a bound goes to the next bucket"),
    M("seq_gap_missed", "state.py", "if prev is not None and seq > prev + 1:",
      "if prev is not None and seq > prev + 2:", ("tests/test_state.py", "tests/test_reader.py"),
      False, "a single lost line is not counted as a sequence gap"),
    M("bad_sample_kept", "state.py", "        if fsum(map(abs, d.values())) <= LIMIT:\n",
      "        if True:\n", ("tests/test_fuzz_paths.py", "-k", "issue_14"), False,
      "samples with NaN, infinite or wrong-typed values kept as they are"),
    M("mean_counts_skips", "history.py",
      "row[2] += sign * timed  # skipped and cached ones have no duration",
      "row[2] += sign * count", ("tests/test_history.py", "tests/test_history_index.py"), False,
      "the history mean counts skipped and cached repeats"),
    M("percentile_rank", "analysis.py", "    h = (n - 1) * q / 100.0\n", "    h = n * q / 100.0\n",
      ("tests/test_analysis.py",), False, "p95 off by one rank"),
    M("mad_constant", "analysis.py", "_MAD_Z = 0.6745\n", "_MAD_Z = 1.0\n",
      ("tests/test_analysis.py",), False, "the robust z-score without its 0.6745 factor"),
    M("regression_no_floor", "analysis.py", '"regressed": beyond and abs(delta) > noise_floor,',
      '"regressed": beyond,', ("tests/test_analysis.py", "tests/test_report.py"), False,
      "regressions flagged within the noise floor"),
    M("gate_without_history", "report.py", "    if earlier < MIN_HISTORY_FOR_GATE:\n",
      "    if False:\n", ("tests/test_report.py",), False,
      "--fail-on-regression without a baseline passes silently"),
    M("evaluator_unlocked", "alerts.py", "        self._lock = threading.Lock()\n        self.open",
      '        self._lock = __import__("contextlib").nullcontext()\n        self.open',
      ("tests/test_alerts.py",), False, "the alert evaluator's lock removed"),
    M("ring_drops_uncounted", "ring.py",
      "return self._total - len(self._items) - self._cleared", "return 0",
      ("tests/test_ring.py",), False, "a full ring no longer counts what it dropped"),
)  # fmt: skip


@dataclass
class Result:
    mutant: Mutant
    outcome: str  # caught, survived, stale, baseline-fails, timeout
    seconds: float
    detail: str = ""


_SKIP = (".git", "__pycache__", "*.pyc", ".hypothesis", ".mypy_cache", ".ruff_cache",
         ".benchmarks", "test-artifacts", "atroz-runs", "build", "dist", "*.egg-info")  # fmt: skip


def _copy(dest: Path) -> None:
    """The checkout without its caches and outputs (tests read docs/ and README.md too)."""
    shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(*_SKIP), dirs_exist_ok=True)


def _pytest(root: Path, args: tuple[str, ...]) -> tuple[int | None, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATROZ_MONITOR_")}
    env["PYTHONPATH"] = str(root)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("ATROZ_FAULT_TRIALS", "3")
    env.setdefault("ATROZ_FUZZ_EXAMPLES", "10")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args]
    try:
        p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                           timeout=TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired:
        return None, "timeout"
    tail = (p.stdout.strip().splitlines() or [""])[-1]
    return p.returncode, tail


def _baseline(args: tuple[str, ...]) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="atroz-mutant-") as tmp:
        _copy(Path(tmp))
        code, tail = _pytest(Path(tmp), args)
    return code == 0, tail


def run_one(m: Mutant, baselines: dict[tuple[str, ...], tuple[bool, str]]) -> Result:
    t0 = time.monotonic()
    ok, tail = baselines[m.tests]
    if not ok:
        return Result(m, "baseline-fails", time.monotonic() - t0, tail)
    with tempfile.TemporaryDirectory(prefix="atroz-mutant-") as tmp:
        root = Path(tmp)
        _copy(root)
        # a module's file name is unique across the stage subpackages
        target = next((root / "atroz_monitor").rglob(m.file))
        text = target.read_text(encoding="utf-8")
        form = next((f for f in ((m.old, m.new), *m.alts) if text.count(f[0]) == 1), None)
        if form is None:
            return Result(m, "stale", 0.0, f"its text is not (once) in {m.file}")
        target.write_text(text.replace(*form), encoding="utf-8")
        code, tail = _pytest(root, m.tests)
    seconds = time.monotonic() - t0
    if code is None:
        return Result(m, "timeout", seconds, tail)
    # pytest: 1 = tests failed, 2/3/4 = interrupted or an error while collecting (an import
    # broken by the bug counts as caught too); 5 = no test ran, which catches nothing.
    return Result(m, "caught" if code in (1, 2, 3, 4) else "survived", seconds, tail)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at once")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = ap.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:<24} {'security ' if m.security else ''}{m.file}: {m.what}")
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown or args.jobs < 1:
        print(f"unknown mutant(s): {', '.join(unknown)}" if unknown else "--jobs must be >= 1",
              file=sys.stderr)  # fmt: skip
        return 2
    chosen = [known[n] for n in args.names] if args.names else list(MUTANTS)
    with ThreadPoolExecutor(args.jobs) as pool:
        sets = list(dict.fromkeys(m.tests for m in chosen))
        baselines = dict(zip(sets, pool.map(_baseline, sets), strict=True))
        results = []
        for r in pool.map(lambda m: run_one(m, baselines), chosen):  # printed as they end
            results.append(r)
            flag = "S" if r.mutant.security else " "
            print(f"{r.outcome:<15} {flag} {r.mutant.name:<24} {r.seconds:6.1f}s  "
                  f"{r.mutant.what}" + (f"  [{r.detail}]" if r.outcome != "caught" else ""),
                  flush=True)  # fmt: skip
    caught = sum(r.outcome == "caught" for r in results)
    sec = [r for r in results if r.mutant.security]
    sec_caught = sum(r.outcome == "caught" for r in sec)
    stale = [r.mutant.name for r in results if r.outcome in ("stale", "baseline-fails")]
    ratio = caught / len(results) if results else 1.0
    print(f"caught {caught}/{len(results)} ({ratio:.0%}); security {sec_caught}/{len(sec)}"
          + (f"; not applicable: {', '.join(stale)}" if stale else ""))  # fmt: skip
    return 0 if ratio >= THRESHOLD and sec_caught == len(sec) and not stale else 1


if __name__ == "__main__":
    raise SystemExit(main())
