"""Notifications people read: Slack and Teams webhook bodies, email over SMTP, against
receivers these tests start on 127.0.0.1 (an HTTP server, an SMTP server on socketserver)."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from helpers import poll

from atroz_monitor import Monitor, alertmsg
from atroz_monitor.alerts import rule
from atroz_monitor.mailer import Mailer

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


class SMTPServer:
    """A minimal SMTP server (RFC 5321 subset: EHLO, STARTTLS offer, AUTH PLAIN, MAIL,
    RCPT, DATA, QUIT) that records each session's commands and messages."""

    def __init__(self, starttls: bool = False) -> None:
        self.commands: list[str] = []
        self.messages: list[bytes] = []
        self.auth: list[str] = []
        outer = self

        class H(socketserver.StreamRequestHandler):
            def reply(self, text: str) -> None:
                self.wfile.write(text.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self) -> None:
                self.reply("220 test ESMTP")
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    cmd = line.decode("ascii", "replace").rstrip("\r\n")
                    verb = cmd.split(" ", 1)[0].upper()
                    outer.commands.append(verb)
                    if verb in ("EHLO", "HELO"):
                        extra = ["250-STARTTLS"] if starttls else []
                        for x in ["250-test", *extra, "250-AUTH PLAIN"]:
                            self.wfile.write(x.encode() + b"\r\n")
                        self.reply("250 OK")
                    elif verb == "STARTTLS":
                        self.reply("220 go ahead")
                        return  # no TLS here: the client's handshake fails, as it must
                    elif verb == "AUTH":
                        raw = base64.b64decode(cmd.split()[2]).split(b"\0")
                        outer.auth.append(f"{raw[1].decode()}:{raw[2].decode()}")
                        self.reply("235 accepted")
                    elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 go")
                        data = b""
                        while not data.endswith(b"\r\n.\r\n"):
                            chunk = self.rfile.readline()
                            if not chunk:
                                return
                            data += chunk
                        outer.messages.append(data[: -len(b".\r\n")])
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 no")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def smtp():
    s = SMTPServer()
    yield s
    s.close()


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


def test_email_is_sent_with_credentials_from_a_file(tmp_path, smtp):
    """email={...} sends one mail per alert through smtplib, logging in with the password
    read from password_file; the password appears in no counter, repr or log line."""
    pw = tmp_path / "smtp-password"
    pw.write_text(SECRET + "\n")
    pw.chmod(0o600)
    cfg = {
        "host": "127.0.0.1",
        "port": smtp.port,
        "starttls": False,
        "username": "bot",
        "password_file": str(pw),
        "to": ["ops@example.org"],
        "sender": "atroz@example.org",
    }
    mon = _failing_run(tmp_path, email=cfg, public_url="http://dash.example:8765")
    poll(lambda: smtp.messages, 10, "the email")
    assert smtp.auth == [f"bot:{SECRET}"]
    msg = email.message_from_bytes(smtp.messages[0], policy=email.policy.default)
    # (a long header is folded on the wire; unfolded it reads as one line)
    assert str(msg["Subject"]).strip() == (
        "[atroz] [critical] phase P07 failed (run nightly, phase P07, raised)"
    )
    assert msg["To"] == "ops@example.org" and msg["From"] == "atroz@example.org"
    text = msg.get_content()
    assert "Phase:     P07" in text and "Run:       nightly (nightly-1)" in text
    assert "Dashboard: http://dash.example:8765/?run=nightly-1" in text
    health = mon.snapshot()["monitor"]
    assert health["email_sent"] == 1 and health["email_failed"] == 0
    assert SECRET not in json.dumps(health) and SECRET not in repr(mon._notifier.mailer)
    assert SECRET not in (tmp_path / "r.jsonl").read_text()


def test_email_password_from_the_environment(tmp_path, smtp, monkeypatch):
    """Without password_file the password comes from $ATROZ_SMTP_PASSWORD."""
    monkeypatch.setenv("ATROZ_SMTP_PASSWORD", SECRET)
    m = Mailer("127.0.0.1", "ops@example.org", port=smtp.port, starttls=False, username="bot")
    assert m.send(PAYLOAD) is True
    assert smtp.auth == [f"bot:{SECRET}"] and len(smtp.messages) == 1


def test_starttls_is_required_never_skipped(tmp_path):
    """With starttls (the default) and a server that does not offer it, or whose TLS fails,
    nothing is sent and no credentials cross in clear: a counted failure."""
    for offers in (False, True):
        srv = SMTPServer(starttls=offers)
        try:
            m = Mailer(
                "127.0.0.1",
                "ops@example.org",
                port=srv.port,
                username="bot",
                password_file=_pwfile(tmp_path),
            )
            assert m.send(PAYLOAD) is False
            assert srv.auth == [] and srv.messages == []
            assert m.failed == 1 and m.last_error.startswith("email: ")
            assert SECRET not in m.last_error
        finally:
            srv.close()


def _pwfile(tmp_path) -> str:
    p = tmp_path / "pw"
    p.write_text(SECRET)
    return str(p)


@pytest.mark.parametrize(
    "cfg,message",
    [
        ({"host": "", "to": "a@b"}, "host"),
        ({"host": "h", "to": []}, "to must be"),
        ({"host": "h", "to": "a@b", "port": 70000}, "port"),
        (
            {"host": "h", "to": "a@b", "username": "u", "password_file": "/nonexistent/pw"},
            "cannot read password_file",
        ),
        (
            {"host": "h", "to": "a@b", "username": "u", "password_env": "NO_SUCH_VAR_H7"},
            "no password",
        ),
        ({"host": "h", "to": "a@b", "colour": "red"}, "unknown setting 'colour'"),
    ],
)
def test_bad_email_settings_fail_at_construction(tmp_path, cfg, message):
    """A bad SMTP setting is a ValueError naming it when the Monitor is built."""
    with pytest.raises(ValueError, match=message):
        Monitor(tmp_path / "r.jsonl", email=cfg)


def test_generic_body_adds_the_link_with_public_url():
    """The generic body gains ``url`` (the run's page, run id quoted) with public_url."""
    doc = json.loads(alertmsg.body("generic", {**PAYLOAD, "run": "a b/c"}, "http://d:1/"))
    assert doc["url"] == "http://d:1/?run=a%20b%2Fc"
    assert json.loads(alertmsg.body("generic", PAYLOAD)) == PAYLOAD


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
