"""How an alert reads where people read it: the webhook bodies (generic JSON, a Slack
incoming-webhook message with blocks, a Microsoft Teams message card) and an email.

Pure functions of the notification payload the monitor queues (``{"source", "run",
"run_name", "host", "alert"}``) and the dashboard's public address, if any: the transport
(``notify.py`` for webhooks, ``mailer.py`` for SMTP) sends what these return. Each message
names the alert, the run, the phase, and links to the run's page when ``public_url`` is set.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from typing import Any

__all__ = ["FORMATS", "body", "email", "generic", "link", "slack", "summary", "teams"]

FORMATS = ("generic", "slack", "teams")
_COLOR = {"critical": "D7263D", "warning": "F2A541", "info": "3A86FF"}
_ICON = {"critical": ":red_circle:", "warning": ":warning:", "info": ":information_source:"}
_LIMIT = 2900  # a Slack section's text takes 3,000 characters


def link(public_url: str | None, run: Any) -> str | None:
    """The run's page on the dashboard at ``public_url`` (None without one)."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/?run={urllib.parse.quote(str(run), safe='')}"


def _facts(item: Mapping[str, Any]) -> list[tuple[str, str]]:
    a = item.get("alert") or {}
    facts = [
        ("Run", f"{item.get('run_name') or item.get('run')} ({item.get('run')})"),
        ("Phase", str(a.get("phase") or "the whole run")),
        ("Severity", str(a.get("severity") or "?")),
        ("State", str(a.get("state") or "?")),
        ("Rule", str(a.get("rule") or "?")),
        ("Host", str(item.get("host") or "?")),
    ]
    if a.get("value") is not None:
        unit = f" {a['unit']}" if a.get("unit") else ""
        facts.append(("Value", f"{a['value']}{unit} (threshold {a.get('threshold')}{unit})"))
    return facts


def summary(item: Mapping[str, Any]) -> str:
    """One line: ``[critical] phase P07 failed (run nightly, phase P07, raised)``."""
    a = item.get("alert") or {}
    where = f", phase {a['phase']}" if a.get("phase") else ""
    return (
        f"[{a.get('severity') or '?'}] {a.get('msg') or a.get('rule') or 'alert'} "
        f"(run {item.get('run_name') or item.get('run')}{where}, {a.get('state') or '?'})"
    )


def generic(item: Mapping[str, Any], public_url: str | None = None) -> dict[str, Any]:
    """The documented JSON payload, plus ``url`` when ``public_url`` is set."""
    out = dict(item)
    url = link(public_url, item.get("run"))
    if url:
        out["url"] = url
    return out


def _mrkdwn(text: Any) -> str:
    # Slack's escaping: these three only (a message may not contain raw < > &).
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(item: Mapping[str, Any], public_url: str | None = None) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (notifications, fallback) and ``blocks``."""
    a = item.get("alert") or {}
    sev = str(a.get("severity") or "info")
    head = f"{_ICON.get(sev, '')} {sev.upper()}: {a.get('msg') or a.get('rule') or 'alert'}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head.strip()[:150]}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{k}*\n{_mrkdwn(v)[:1900]}"} for k, v in _facts(item)
            ][:10],
        },
    ]
    url = link(public_url, item.get("run"))
    if url:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"<{url}|Open the run's dashboard>"},
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": _mrkdwn(f"alert {a.get('alert')}")[:_LIMIT]}],
        }
    )
    return {"text": _mrkdwn(summary(item))[:_LIMIT], "blocks": blocks}


def teams(item: Mapping[str, Any], public_url: str | None = None) -> dict[str, Any]:
    """A Microsoft Teams message card (Office 365 connector / Workflows webhook)."""
    a = item.get("alert") or {}
    sev = str(a.get("severity") or "info")
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": summary(item)[:250],
        "themeColor": _COLOR.get(sev, "808080"),
        "title": f"{sev.upper()}: {a.get('msg') or a.get('rule') or 'alert'}"[:250],
        "sections": [
            {
                "activityTitle": f"atroz_monitor alert {a.get('alert')}",
                "facts": [{"name": k, "value": v} for k, v in _facts(item)],
                "markdown": False,
            }
        ],
    }
    url = link(public_url, item.get("run"))
    if url:
        card["potentialAction"] = [
            {
                "@type": "OpenUri",
                "name": "Open the run's dashboard",
                "targets": [{"os": "default", "uri": url}],
            }
        ]
    return card


_BUILDERS: dict[str, Callable[[Mapping[str, Any], str | None], dict[str, Any]]] = {
    "generic": generic,
    "slack": slack,
    "teams": teams,
}


def body(fmt: str, item: Mapping[str, Any], public_url: str | None = None) -> bytes:
    """The webhook request body for ``fmt`` (one of ``FORMATS``), UTF-8 JSON."""
    doc = _BUILDERS[fmt](item, public_url)
    return json.dumps(doc, default=repr, ensure_ascii=False).encode("utf-8")


def email(
    item: Mapping[str, Any], sender: str, to: list[str], public_url: str | None = None
) -> EmailMessage:
    """A plain-text email about one alert."""
    a = item.get("alert") or {}
    msg = EmailMessage()
    subject = f"[atroz] {summary(item)}"
    # A header never holds a line break (a message or run name could carry one).
    msg["Subject"] = " ".join(subject.split())[:200]
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    lines = [str(a.get("msg") or a.get("rule") or "alert"), ""]
    lines += [f"{k + ':':<10} {v}" for k, v in _facts(item)]
    lines += [f"{'Alert:':<10} {a.get('alert')}"]
    url = link(public_url, item.get("run"))
    if url:
        lines += ["", f"Dashboard: {url}"]
    lines += ["", "-- atroz_monitor"]
    msg.set_content("\n".join(lines))
    return msg
