"""Email alerts (mailer.py): one message per alert through smtplib, against an SMTP server
this file starts on 127.0.0.1 (socketserver), with credentials that never leak."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import socketserver
import threading

import pytest
from helpers import poll
from test_alertmsg import PAYLOAD, SECRET, _failing_run

from atroz_monitor import Monitor
from atroz_monitor.record.mailer import Mailer


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
def smtp():
    s = SMTPServer()
    yield s
    s.close()


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
