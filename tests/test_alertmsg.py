"""Notifications people read (alertmsg.py): Slack, Teams and generic webhook bodies, posted
to an HTTP receiver these tests start on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from helpers import poll

from atroz_monitor import Monitor
from atroz_monitor.view import alertmsg
from atroz_monitor.view.alerts import rule

SECRET = "s3cr3t-pa55w0rd"


class Receiver:
    """An HTTP server on 127.0.0.1:0 that keeps every POST body."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length", "0"))
                outer.bodies.append((self.headers.get("Content-Type", ""), self.rfile.read(n)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _failing_run(tmp_path, **kw: Any) -> Monitor:
    """A run whose phase P07 fails: one critical phase_failed alert goes out."""
    mon = Monitor(
        tmp_path / "r.jsonl",
        sample_interval=None,
        run_id="nightly-1",
        name="nightly",
        alert_rules=[rule("phase_failed")],
        **kw,
    )
    with mon:
        try:
            with mon.phase("P07", name="Archival"):
                raise RuntimeError("disk full")
        except RuntimeError:
            pass
    return mon


PAYLOAD = {
    "source": "atroz_monitor",
    "run": "nightly-1",
    "run_name": "nightly",
    "host": "etl-1",
    "alert": {
        "alert": "phase_failed:phase:P07:1",
        "rule": "phase_failed",
        "type": "phase_failed",
        "severity": "critical",
        "state": "raised",
        "scope": "phase:P07",
        "phase": "P07",
        "span": "1.7",
        "value": 1.0,
        "threshold": 0.0,
        "unit": "failed",
        "msg": "phase P07 failed <b>&</b>",
    },
}


def test_slack_webhook_gets_text_and_blocks_with_a_link(tmp_path, receiver):
    """webhook_format="slack" POSTs text + blocks naming the alert, run and phase, and a
    link to the run's page at public_url."""
    mon = _failing_run(
        tmp_path,
        webhook=receiver.url,
        webhook_format="slack",
        public_url="http://dash.example:8765/",
    )
    poll(lambda: receiver.bodies, 10, "the webhook")
    ctype, raw = receiver.bodies[0]
    doc = json.loads(raw)
    assert ctype == "application/json"
    assert doc["text"] == "[critical] phase P07 failed (run nightly, phase P07, raised)"
    kinds = [b["type"] for b in doc["blocks"]]
    assert kinds == ["header", "section", "section", "context"]
    fields = {
        f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in doc["blocks"][1]["fields"]
    }
    assert fields["*Run*"] == "nightly (nightly-1)" and fields["*Phase*"] == "P07"
    assert doc["blocks"][2]["text"]["text"] == (
        "<http://dash.example:8765/?run=nightly-1|Open the run's dashboard>"
    )
    assert mon.snapshot()["monitor"]["notify_sent"] == 1


def test_slack_escapes_control_characters_of_its_markup():
    """<, > and & in alert text are escaped in mrkdwn as Slack requires (no injected
    links); without public_url there is no link block."""
    doc = alertmsg.slack(PAYLOAD)
    assert doc["text"].startswith("[critical] phase P07 failed &lt;b&gt;&amp;&lt;/b&gt; (run")
    assert [b["type"] for b in doc["blocks"]] == ["header", "section", "context"]
    assert doc["blocks"][0]["text"] == {
        "type": "plain_text",
        "text": ":red_circle: CRITICAL: phase P07 failed <b>&</b>",  # plain text: as is
    }


def test_teams_webhook_gets_a_message_card(tmp_path, receiver):
    """webhook_format="teams" POSTs a MessageCard with facts and an OpenUri action."""
    _failing_run(
        tmp_path, webhook=receiver.url, webhook_format="teams", public_url="https://dash.example"
    )
    poll(lambda: receiver.bodies, 10, "the webhook")
    card = json.loads(receiver.bodies[0][1])
    assert card["@type"] == "MessageCard" and card["themeColor"] == "D7263D"
    assert card["title"] == "CRITICAL: phase P07 failed"
    facts = {f["name"]: f["value"] for f in card["sections"][0]["facts"]}
    assert facts["Run"] == "nightly (nightly-1)" and facts["Phase"] == "P07"
    assert facts["Severity"] == "critical"
    (action,) = card["potentialAction"]
    assert action["targets"][0]["uri"] == "https://dash.example/?run=nightly-1"


def test_generic_webhook_keeps_its_documented_shape(tmp_path, receiver):
    """The default format is the documented payload (plus url only with public_url)."""
    _failing_run(tmp_path, webhook=receiver.url)
    poll(lambda: receiver.bodies, 10, "the webhook")
    doc = json.loads(receiver.bodies[0][1])
    assert set(doc) == {"source", "run", "run_name", "host", "alert"}
    assert doc["run"] == "nightly-1" and doc["alert"]["phase"] == "P07"


def test_bad_webhook_format_and_public_url_fail_at_construction(tmp_path):
    """An unknown format or a public_url that is not http(s) is a ValueError at once."""
    with pytest.raises(ValueError, match="webhook_format must be one of generic, slack, teams"):
        Monitor(tmp_path / "a.jsonl", webhook="http://127.0.0.1:9/x", webhook_format="discord")
    with pytest.raises(ValueError, match="public_url"):
        Monitor(tmp_path / "b.jsonl", webhook="http://127.0.0.1:9/x", public_url="dash:8765")


def test_generic_body_adds_the_link_with_public_url():
    """The generic body gains ``url`` (the run's page, run id quoted) with public_url."""
    doc = json.loads(alertmsg.body("generic", {**PAYLOAD, "run": "a b/c"}, "http://d:1/"))
    assert doc["url"] == "http://d:1/?run=a%20b%2Fc"
    assert json.loads(alertmsg.body("generic", PAYLOAD)) == PAYLOAD
