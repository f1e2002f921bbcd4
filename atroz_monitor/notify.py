"""Alert notifiers: an ``on_alert`` callback and a webhook, off the pipeline's threads.

Alerts are handed over with a non-blocking put on a bounded queue (a full queue drops the
alert and counts it); one daemon thread calls the callback and POSTs the JSON payload with
``urllib``, with a timeout and retries with exponential backoff. Nothing here blocks or
raises into the pipeline: failures are counted in ``health()``.

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
from typing import Any


class Notifier:
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
    ) -> None:
        if webhook is not None and not (
            webhook.startswith("http://") or webhook.startswith("https://")
        ):
            raise ValueError(f"webhook must be an http:// or https:// URL, not {webhook!r}")
        if on_alert is not None and not callable(on_alert):
            raise ValueError("on_alert must be callable")
        from .alertmsg import FORMATS

        if webhook_format not in FORMATS:
            raise ValueError(
                f"webhook_format must be one of {', '.join(FORMATS)}, not {webhook_format!r}"
            )
        self.webhook_format = webhook_format  # the body: alertmsg.body (generic, slack, teams)
        self.public_url = public_url  # messages link to the run's page there
        self.mailer = mailer  # mailer.Mailer: one email per alert, from this thread
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

    def submit(self, payload: dict[str, Any]) -> None:
        """Queue one notification; never blocks (a full queue drops and counts)."""
        try:
            self._ensure_thread()
            self._q.put_nowait(payload)
        except queue.Full:
            self.dropped += 1
        except Exception as exc:  # a thread that cannot start, say
            self.dropped += 1
            self.last_error = f"{type(exc).__name__}: {exc}"

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="atroz-notify", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self.on_alert is not None:
                try:
                    self.on_alert(item["alert"])
                except Exception as exc:
                    self.callback_errors += 1
                    self.last_error = f"on_alert: {type(exc).__name__}: {exc}"
            if self.webhook is not None:
                self._post(item)
            if self.mailer is not None:
                self.mailer.send(item, self.public_url)

    def _post(self, item: dict[str, Any]) -> None:
        import urllib.error
        import urllib.request

        from .alertmsg import body

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
                self.sent += 1
                return
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
        self.failed += 1

    def close(self, timeout: float = 2.0) -> None:
        """Flush what is queued (bounded by ``timeout``), then stop the thread."""
        t = self._thread
        if t is None:
            return
        try:
            self._q.put_nowait(None)
        except queue.Full:
            self._stop.set()
        t.join(timeout)
        if t.is_alive():
            self._stop.set()  # abandon the retries still to come (counted as failed)
            t.join(1.0)

    def health(self) -> dict[str, Any]:
        return {
            "notify_sent": self.sent,
            "notify_failed": self.failed,
            "notify_dropped": self.dropped,
            "notify_retries": self.retried,
            "notify_callback_errors": self.callback_errors,
            "notify_last_error": self.last_error,
        }
