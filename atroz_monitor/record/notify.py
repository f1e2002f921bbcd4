"""Alert notifiers: an ``on_alert`` callback and a webhook, off the pipeline's threads.

Alerts are handed over with a non-blocking put on a bounded queue (a full queue drops the
alert and counts it); one daemon thread calls the callback and POSTs the JSON payload with
``urllib``, with a timeout and retries with exponential backoff. Nothing here blocks or
raises into the pipeline: failures are counted in ``health()``. At the end of a run,
``close(wait)`` gives what is pending a bounded total wait (0.5 s by default); whatever is
not delivered by then is counted (queued: ``notify_dropped``; in flight:
``notify_failed``), never waited for.

Webhook payload (``Content-Type: application/json``)::

    {"source": "atroz_monitor", "run": "<run id>", "run_name": "...", "host": "...",
     "alert": {"alert": "<id>", "rule": "...", "type": "...", "severity": "warning",
               "state": "raised", "scope": "...", "phase": "P03", "span": "...",
               "value": 2.4, "threshold": 1.5, "unit": "x p95", "msg": "..."}}
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .monitor import Run


class Notifier:
    """Delivers alerts to a webhook, a callback and a mailer from one daemon thread; a
    component of the monitor (see component.py)."""

    def __init__(
        self,
        webhook: str | None = None,
        on_alert: Callable[[dict[str, Any]], Any] | None = None,
        *,
        maxsize: int = 1000,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        webhook_format: str = "generic",
        public_url: str | None = None,
        mailer: Any = None,
        close_wait: float = 0.5,
    ) -> None:
        if webhook is not None and not (
            webhook.startswith("http://") or webhook.startswith("https://")
        ):
            raise ValueError(f"webhook must be an http:// or https:// URL, not {webhook!r}")
        if on_alert is not None and not callable(on_alert):
            raise ValueError("on_alert must be callable")
        from ..view.alertmsg import FORMATS

        if webhook_format not in FORMATS:
            raise ValueError(
                f"webhook_format must be one of {', '.join(FORMATS)}, not {webhook_format!r}"
            )
        self.webhook_format = webhook_format  # the body: alertmsg.body (generic, slack, teams)
        self.public_url = public_url  # messages link to the run's page there
        self.mailer = mailer  # mailer.Mailer: one email per alert, from this thread
        self.close_wait = close_wait  # close()'s bound: the monitor's notify_wait
        self.webhook = webhook
        self.on_alert = on_alert
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.retried = 0
        self.callback_errors = 0
        self.last_error: str | None = None
        # Every accepted item is settled exactly once: by the thread (``_settle``), or by
        # ``close`` when it gives up (in flight: failed, still queued: dropped), after which
        # the thread's late outcomes count nothing. So run_end's counters add up.
        self._accepted = 0
        self._settled = 0
        self._inflight = False
        self._abandoned = False
        self._count = threading.Lock()

    def submit(self, payload: dict[str, Any]) -> None:
        """Queue one notification; never blocks (a full queue drops and counts)."""
        try:
            if self._abandoned:  # after close gave up: nobody would deliver it
                raise queue.Full
            self._ensure_thread()
            with self._count:
                self._q.put_nowait(payload)
                self._accepted += 1
        except queue.Full:
            with self._count:
                self.dropped += 1
        except Exception as exc:  # a thread that cannot start, say
            with self._count:
                self.dropped += 1
            self.last_error = f"{type(exc).__name__}: {exc}"

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="atroz-notify", daemon=True)
                self._thread.start()

    def _settle(self, outcome: str | None) -> None:
        """Count the outcome of the item in flight, unless ``close`` already counted it."""
        with self._count:
            self._inflight = False
            if not self._abandoned:
                self._settled += 1
                if outcome is not None:
                    setattr(self, outcome, getattr(self, outcome) + 1)

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            with self._count:
                if self._abandoned:
                    continue  # counted by close()
                self._inflight = True
            if self.on_alert is not None:
                try:
                    self.on_alert(item["alert"])
                except Exception as exc:
                    self.callback_errors += 1
                    self.last_error = f"on_alert: {type(exc).__name__}: {exc}"
            if self.webhook is not None:
                outcome: str | None = self._post(item)
            else:
                outcome = None
            if self.mailer is not None:
                self.mailer.send(item, self.public_url)  # counted by the mailer itself
            self._settle(outcome)

    def _post(self, item: dict[str, Any]) -> str:
        """Deliver ``item``; the name of the counter its outcome goes to."""
        import urllib.error
        import urllib.request

        from ..view.alertmsg import body

        data = body(self.webhook_format, item, self.public_url)
        delay = self.backoff
        for attempt in range(self.retries + 1):
            if self._stop.is_set() and attempt:
                break
            req = urllib.request.Request(
                self.webhook,  # type: ignore[arg-type]
                data=data,
                headers={"Content-Type": "application/json", "User-Agent": "atroz_monitor"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    resp.read(65536)
                return "sent"
            except urllib.error.HTTPError as exc:
                self.last_error = f"webhook answered {exc.code}"
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    break  # the request is wrong: retrying will not help
            except Exception as exc:  # refused, timed out, DNS...
                self.last_error = f"webhook: {type(exc).__name__}: {exc}"
            if attempt < self.retries:
                self.retried += 1
                if self._stop.wait(delay):
                    break
                delay *= 2
        return "failed"

    # -- the component protocol (component.py): started with the notifier's first alert ----
    closes_after_alerts = True  # the main run's last alerts are sent (or counted) first

    def start(self, run: Run) -> None:
        pass  # the thread starts with the first alert submitted

    def after_fork(self) -> None:
        pass  # a forked child's runs are joined, not owned: it raises no alerts to send

    def close(self, timeout: float | None = None) -> None:
        """Give what is queued at most ``timeout`` seconds (default ``close_wait``) in total
        to go out, then stop: what is still queued is counted dropped, what is in flight
        failed."""
        if timeout is None:
            timeout = self.close_wait
        t = self._thread
        if t is None:
            return
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass  # the thread finds the queue drained below
        t.join(max(0.0, timeout))
        if not t.is_alive():
            return
        self._stop.set()  # no more retries or backoff sleeps
        with self._count:
            self._abandoned = True
            pending = self._accepted - self._settled
            if self._inflight and pending:
                self.failed += 1
                pending -= 1
                if self.last_error is None:
                    self.last_error = "webhook: still undelivered at the end of the run"
            self.dropped += pending
            self._settled = self._accepted
        while True:  # free the queue now; the thread skips what it still takes
            try:
                self._q.get_nowait()
            except queue.Empty:
                break

    def health(self) -> dict[str, Any]:
        """The delivery counters, and the mailer's when there is one."""
        with self._count:
            h = {
                "notify_sent": self.sent,
                "notify_failed": self.failed,
                "notify_dropped": self.dropped,
                "notify_retries": self.retried,
                "notify_callback_errors": self.callback_errors,
                "notify_last_error": self.last_error,
            }
        if self.mailer is not None:
            h.update(self.mailer.health())
        return h
