"""Alert delivery (notify.py): the Notifier's queue and thread against a real HTTP receiver
on 127.0.0.1 port 0: delivery, retries on 5xx, none on 4xx, the on_alert callback, a full
queue, and close's bounded wait, each counted in health()."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from helpers import poll
from test_alertmsg import PAYLOAD, _failing_run

from atroz_monitor.record.notify import Notifier


class Hook:
    """A webhook receiver answering each POST with the next scripted status (then 200);
    ``hold`` makes every request wait until it is set."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.script = list(script or [])
        self.bodies: list[tuple[str, bytes]] = []
        self.started = 0
        self.hold = threading.Event()
        self.hold.set()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                outer.started += 1
                outer.hold.wait(30)
                n = int(self.headers.get("Content-Length", "0"))
                outer.bodies.append((self.headers.get("Content-Type", ""), self.rfile.read(n)))
                code = outer.script.pop(0) if outer.script else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def _item(n: int) -> dict[str, Any]:
    return {**PAYLOAD, "alert": {**PAYLOAD["alert"], "alert": f"a{n}"}}


def test_an_alert_is_posted_as_the_documented_json(hook: Hook) -> None:
    """One submitted alert arrives as one POST of the generic JSON payload and counts as
    sent once close() returns."""
    n = Notifier(hook.url, backoff=0.01)
    n.submit(_item(1))
    n.close(10.0)
    assert [(ct, json.loads(b)) for ct, b in hook.bodies] == [("application/json", _item(1))]
    h = n.health()
    assert (h["notify_sent"], h["notify_failed"], h["notify_dropped"]) == (1, 0, 0)


def test_a_5xx_is_retried_and_a_4xx_is_not() -> None:
    """500 then 200: delivered on the second try (1 retry). 400: failed at once, no retry,
    the status in last_error."""
    hook = Hook([500])
    try:
        n = Notifier(hook.url, backoff=0.01)
        n.submit(_item(1))
        n.close(10.0)
        assert (n.sent, n.retried, n.failed, len(hook.bodies)) == (1, 1, 0, 2)
        hook.script = [400]
        m = Notifier(hook.url, backoff=0.01)
        m.submit(_item(2))
        m.close(10.0)
        assert (m.sent, m.retried, m.failed) == (0, 0, 1)
        assert m.health()["notify_last_error"] == "webhook answered 400"
    finally:
        hook.close()


def test_the_callback_gets_the_alert_and_its_errors_are_counted(hook: Hook) -> None:
    """on_alert receives the alert dict; a callback that raises is counted and the webhook
    still gets the alert."""
    got: list[dict[str, Any]] = []

    def cb(alert: dict[str, Any]) -> None:
        got.append(alert)
        raise RuntimeError("callback bug")

    n = Notifier(hook.url, on_alert=cb, backoff=0.01)
    n.submit(_item(1))
    n.close(10.0)
    assert got == [_item(1)["alert"]]
    h = n.health()
    assert (h["notify_callback_errors"], h["notify_sent"]) == (1, 1)
    assert h["notify_last_error"] == "on_alert: RuntimeError: callback bug"


def test_a_full_queue_drops_and_counts_and_never_blocks(hook: Hook) -> None:
    """maxsize=1 with the receiver holding the first POST: the second alert waits in the
    queue, the third is dropped; released, the first two are delivered."""
    hook.hold.clear()
    n = Notifier(hook.url, maxsize=1, backoff=0.01)
    n.submit(_item(1))
    poll(lambda: hook.started == 1, 10, "the first POST in flight")
    n.submit(_item(2))
    n.submit(_item(3))
    assert n.health()["notify_dropped"] == 1
    hook.hold.set()
    n.close(10.0)
    assert [json.loads(b)["alert"]["alert"] for _, b in hook.bodies] == ["a1", "a2"]
    assert (n.sent, n.dropped, n.failed) == (2, 1, 0)


def test_close_gives_up_after_its_wait_and_counts_what_is_left(hook: Hook) -> None:
    """A receiver that holds every request: close(0.2) counts the alert in flight failed and
    the 2 queued dropped; an alert submitted afterwards is dropped too."""
    hook.hold.clear()
    n = Notifier(hook.url, timeout=30.0, backoff=0.01)
    n.submit(_item(1))
    poll(lambda: hook.started == 1, 10, "the first POST in flight")
    n.submit(_item(2))
    n.submit(_item(3))
    n.close(0.2)
    assert (n.sent, n.failed, n.dropped) == (0, 1, 2)
    n.submit(_item(4))
    assert n.health()["notify_dropped"] == 3


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"webhook": "ftp://x/y"}, "http:// or https://"),
        ({"webhook": "http://x/y", "webhook_format": "discord"}, "webhook_format"),
        ({"on_alert": 3}, "callable"),
    ],
)
def test_bad_settings_fail_at_construction(kw: dict[str, Any], message: str) -> None:
    """A webhook that is not http(s), an unknown format or a callback that cannot be called
    is a ValueError naming it."""
    with pytest.raises(ValueError, match=message):
        Notifier(**kw)


def test_a_webhook_token_never_reaches_the_log(tmp_path):
    """A webhook URL holding a token that cannot be reached: the failure is counted in
    run_end, and the token is nowhere in the log."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    _failing_run(tmp_path, webhook=f"http://127.0.0.1:{port}/services/T0KEN-XYZ")
    text = (tmp_path / "r.jsonl").read_text()
    end = json.loads(text.splitlines()[-1])
    assert end["ev"] == "run_end" and end["counters"]["notify_sent"] == 0
    assert end["counters"]["notify_last_error"].startswith("webhook: ")
    assert "T0KEN" not in text
