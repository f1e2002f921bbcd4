"""The dashboard page: its packaged assets, and the same page as one self-contained file.

Live, the server sends ``index.html`` at ``/``, which loads ``static/style.css``,
``static/app.js`` and ``favicon.svg`` from the same origin (the page runs under
``Content-Security-Policy: default-src 'self'``: no inline script or style), and ``app.js``
reads the JSON API and the event stream.

Static (``report --format html``), :func:`render_static` inlines the stylesheet and the
script, turns the favicon into a ``data:`` URL and embeds the data as
``<script type="application/json" id="atroz-data">``; ``app.js`` finds that element and
renders from it without a single network request. One code path draws both.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.resources
import time
from collections.abc import Mapping
from typing import Any

from ..events import dumps

__all__ = ["ASSETS", "asset", "embed_json", "render_static"]

# The packaged assets, by name, with their exact Content-Type. Nothing else is ever read.
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "insights.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

# The exact lines of index.html that static mode replaces (checked: a template edit that
# drops one fails loudly instead of producing a page that fetches from the network).
_ICON_TAG = '<link rel="icon" type="image/svg+xml" href="favicon.svg">'
_CSS_TAG = '<link rel="stylesheet" href="static/style.css">'
_JS_TAG = '<script src="static/app.js" defer></script>'
_INSIGHTS_TAG = '<script src="static/insights.js" defer></script>'


@functools.cache
def asset(name: str) -> bytes:
    """The bytes of one packaged asset; ``KeyError`` for any name not in :data:`ASSETS`."""
    if name not in ASSETS:
        raise KeyError(name)
    return importlib.resources.files(__package__).joinpath("static").joinpath(name).read_bytes()


def embed_json(data: Any) -> str:
    """``data`` as JSON that is safe inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` are written as ``\\u003c``, ``\\u003e`` and ``\\u0026`` (valid
    JSON escapes, since JSON has those characters only inside strings), so no user string
    can close the element (``</script>``) or open a comment (``<!--``): a stricter form of
    escaping ``</`` as ``<\\/``. The encoding is ASCII and never raises (non-finite numbers
    become null, unknown objects their ``repr``).
    """
    text = dumps(data)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _replace_once(html: str, old: str, new: str) -> str:
    if html.count(old) != 1:
        raise RuntimeError(f"static/index.html no longer has exactly one {old!r}")
    return html.replace(old, new)


def render_static(data: Mapping[str, Any]) -> str:
    """The dashboard as one HTML file that works from disk with no network.

    ``data`` is ``{"snapshot": views.snapshot(...), "runs": [runs list rows],
    "history": {key: history.phase_history(...)}, "trends": {key:
    history.phase_trends(...)}, "generated": unix time, "insights": {"history":
    charts.history_view(...), "suggestions": [...]}, "compare": compare.compare_runs(...) or
    None}`` (``generated`` defaults to now; ``insights`` and ``compare`` are optional).
    """
    doc = dict(data)
    doc.setdefault("generated", time.time())
    css = "\n" + asset("style.css").decode("utf-8")
    js = "\n" + asset("app.js").decode("utf-8")
    js2 = "\n" + asset("insights.js").decode("utf-8")
    # The inlined code comes from the package, never from a run; still, make sure it
    # cannot end its own element early.
    for code in (js, js2):
        if "</style" in css.lower() or "</script" in code.lower() or "<!--" in code:
            raise RuntimeError("a packaged asset contains a closing tag")
    icon = "data:image/svg+xml;base64," + base64.b64encode(asset("favicon.svg")).decode("ascii")
    # No server sends a CSP for a file, so the file carries its own: only this exact script
    # and stylesheet run (by hash), and nothing may be fetched.
    csp = (
        "default-src 'none'; "
        f"script-src {_sha256(js)} {_sha256(js2)}; style-src {_sha256(css)}; "
        "img-src data: blob:; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )
    html = asset("index.html").decode("utf-8")
    html = _replace_once(html, _ICON_TAG, f'<link rel="icon" type="image/svg+xml" href="{icon}">')
    html = _replace_once(html, _CSS_TAG, f"<style>{css}</style>")
    html = _replace_once(
        html,
        _JS_TAG,
        f'<script type="application/json" id="atroz-data">{embed_json(doc)}</script>\n'
        f"<script>{js}</script>",
    )
    html = _replace_once(html, _INSIGHTS_TAG, f"<script>{js2}</script>")
    meta = f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
    return _replace_once(html, '<meta charset="utf-8">\n', '<meta charset="utf-8">\n' + meta)
