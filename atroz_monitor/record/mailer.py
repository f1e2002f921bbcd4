"""Alert email through ``smtplib``: host, port, STARTTLS, credentials from a file or the
environment, never logged.

``Mailer`` is built (and checked) when the ``Monitor`` is; it sends from the notifier's
background thread (``notify.py``), never from the pipeline's. The password is read once at
construction from ``password_file`` (its first line) or the environment variable named by
``password_env`` (default ``ATROZ_SMTP_PASSWORD``), kept out of ``repr``, and never part
of an error message: what failed is counted in ``health()`` by its exception type and the
server's reply code only.
"""

from __future__ import annotations

import os
import smtplib
import ssl as _ssl
from collections.abc import Iterable, Mapping
from typing import Any

from ..view import alertmsg

__all__ = ["Mailer", "mailer_from"]

PASSWORD_ENV = "ATROZ_SMTP_PASSWORD"
_KEYS = {
    "host", "port", "to", "sender", "starttls", "ssl", "username", "password_file",
    "password_env", "timeout",
}  # fmt: skip


class Mailer:
    """Sends one plain-text email per alert."""

    def __init__(
        self,
        host: str,
        to: str | Iterable[str],
        *,
        port: int = 587,
        sender: str | None = None,
        starttls: bool = True,
        ssl: bool = False,
        username: str | None = None,
        password_file: str | os.PathLike[str] | None = None,
        password_env: str = PASSWORD_ENV,
        timeout: float = 10.0,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError("email: host must be a host name")
        if type(port) is not int or not 0 < port < 65536:
            raise ValueError(f"email: port must be 1-65535, not {port!r}")
        rcpt = [to] if isinstance(to, str) else list(to)
        if not rcpt or not all(isinstance(t, str) and "@" in t for t in rcpt):
            raise ValueError("email: to must be one or more addresses")
        if any("\n" in t or "\r" in t for t in [*rcpt, sender or ""]):
            raise ValueError("email: addresses hold no line breaks")
        if ssl and starttls:
            starttls = False  # implicit TLS (port 465) already encrypts
        self.host, self.port, self.to = host, port, rcpt
        node = os.uname().nodename if hasattr(os, "uname") else "localhost"
        self.sender = sender or f"atroz-monitor@{node}"
        self.starttls, self.ssl, self.timeout = bool(starttls), bool(ssl), float(timeout)
        self.username = username
        self._password: str | None = None
        if username is not None:
            if password_file is not None:
                try:
                    with open(password_file, encoding="utf-8") as f:
                        self._password = f.readline().rstrip("\r\n")
                except OSError as exc:
                    raise ValueError(
                        f"email: cannot read password_file {os.fspath(password_file)!r}: "
                        f"{exc.strerror}"
                    ) from None
            else:
                self._password = os.environ.get(password_env)
            if not self._password:
                raise ValueError(
                    f"email: username given but no password (password_file, or ${password_env})"
                )
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return f"Mailer({self.host!r}, port={self.port}, to={self.to!r}, user={self.username!r})"

    def send(self, item: Mapping[str, Any], public_url: str | None = None) -> bool:
        """Send one alert; never raises (a failure is counted)."""
        try:
            msg = alertmsg.email(item, self.sender, self.to, public_url)
            ctx = _ssl.create_default_context()
            smtp: smtplib.SMTP
            if self.ssl:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ctx)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                smtp.ehlo()
                if self.starttls:
                    # Required, never optional: without STARTTLS the credentials and the
                    # message would cross the network in clear (SMTPNotSupportedError).
                    smtp.starttls(context=ctx)
                    smtp.ehlo()
                if self.username is not None and self._password is not None:
                    smtp.login(self.username, self._password)
                smtp.send_message(msg)
            self.sent += 1
            return True
        except Exception as exc:
            self.failed += 1
            code = getattr(exc, "smtp_code", None)
            # The type and the reply code only: a server's reply may echo what it was sent.
            self.last_error = f"email: {type(exc).__name__}" + (f" ({code})" if code else "")
            return False

    def health(self) -> dict[str, Any]:
        return {
            "email_sent": self.sent,
            "email_failed": self.failed,
            "email_last_error": self.last_error,
        }


def mailer_from(config: Mapping[str, Any] | Mailer) -> Mailer:
    """A Mailer from ``Monitor(email={...})`` (the keyword arguments above, as a dict)."""
    if isinstance(config, Mailer):
        return config
    if not isinstance(config, Mapping):
        raise ValueError("email must be a dict of SMTP settings (host, to, ...)")
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        known = ", ".join(sorted(_KEYS))
        raise ValueError(f"email: unknown setting {unknown[0]!r} (known: {known})")
    kw = {k: v for k, v in config.items() if k not in ("host", "to")}
    return Mailer(config.get("host"), config.get("to") or [], **kw)  # type: ignore[arg-type]
