"""Redaction: secrets are replaced by ``[REDACTED]`` before anything is written.

A :class:`Redactor` runs over argv, run and phase metadata, log messages, artifact paths and
metric names (the recorder decides where; see ``docs/OPERATIONS.md``). Built-in patterns cover
the common secret shapes, each under a name so it can be turned off; user patterns add more.

The rules, precisely (the tests hold a corpus of both sides):

- ``key_value``: the value after a key *named like a secret*, written ``key=value``,
  ``key: value``, ``"key": "value"``, ``'key': 'value'``, ``--key=value``, ``--key value``
  (and an argv list ``["--key", "value"]``), or a dict key in :meth:`Redactor.redact_obj`
  (whose value is replaced whole, whatever its type, except None).
  A key is split into words (``_ - .`` and camelCase); trailing qualifier words (``id``,
  ``value``, ``b64``, ``hash``, digits ...) are dropped; it is named like a secret when the last
  word ends with ``password``, ``passwd``, ``passphrase``, ``pwd``, ``secret``, ``token`` (or
  the plurals ``passwords``, ``secrets``), or the last two words joined end with ``apikey``,
  ``accesskey``, ``privatekey``, ``secretkey``, ``authkey``, ``signingkey``,
  ``encryptionkey``, ``masterkey`` (plural too). So ``db_password``, ``PGPASSWORD``,
  ``X-Api-Key``, ``sessionToken``, ``AWS_SECRET_ACCESS_KEY``, ``SECRET_KEY_BASE`` are secret;
  ``max_tokens``, ``token_count``, ``tokenizer``, ``passwordless``, ``password_policy``,
  ``private_key_path``, ``key``, ``monkey`` are not. Prose without a separator ("token count
  12", "the password was reset") is left alone. An unquoted value runs to whitespace, a quote
  or ``&``; a quoted one to its closing quote (or the end of the line if unclosed).
- ``authorization``: the credentials of an ``Authorization:`` / ``Proxy-Authorization:`` header
  (the scheme, e.g. ``Bearer``, is kept) and a bare ``Bearer <token>`` of 8+ token characters.
- ``url_credentials``: ``scheme://user:password@host`` keeps scheme, user and host.
- ``aws_access_key``: AWS access key ids (``AKIA``/``ASIA`` + 16 upper-case letters or digits).
  AWS secret keys are caught by ``key_value`` (``aws_secret_access_key=...``).
- ``private_key``: ``-----BEGIN ... PRIVATE KEY----- ... -----END ... PRIVATE KEY-----`` blocks,
  multi-line; a block cut short (no END line) is redacted to the end of the text.
- ``token_shapes``: self-identifying tokens: GitHub (``ghp_``, ``github_pat_`` ...), GitLab
  (``glpat-``), Slack (``xox?-``), ``sk-``/``sk_live_`` style API keys, Google (``AIza``), JWTs.

User patterns (``patterns=``) are regex strings or compiled patterns: with capturing groups only
the groups are replaced, otherwise the whole match. They run after the built-ins and on every
string (they cannot take part in the fast pre-check). Built-ins are idempotent
(``redact(redact(s)) == redact(s)``); a user pattern that matches inside ``[REDACTED]`` is not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["BUILTIN_PATTERNS", "REDACTED", "Redactor", "is_secret_key"]

REDACTED = "[REDACTED]"

BUILTIN_PATTERNS = (
    "private_key",
    "url_credentials",
    "authorization",
    "key_value",
    "aws_access_key",
    "token_shapes",
)
"""The built-in pattern names, in the order they run; any may be passed to ``disable=``."""

# ---------------------------------------------------------------------------------------------
# Key names

_SIMPLE = ("password", "passwd", "passphrase", "pwd", "secret", "token", "passwords", "secrets")
_COMPOUND = tuple(
    w + s
    for w in (
        "apikey",
        "accesskey",
        "privatekey",
        "secretkey",
        "authkey",
        "signingkey",
        "encryptionkey",
        "masterkey",
    )
    for s in ("", "s")
)
# Words after the secret word that still name the secret itself (or its encoding).
_QUALIFIERS = frozenset(
    ("id", "base", "b64", "base64", "value", "val", "data", "str", "string", "raw", "hex")
    + ("enc", "encoded", "plain", "plaintext", "hash")
)
_WORDS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# Lower-case substrings a secret key name must contain: the cheap test before splitting.
_KEY_HINTS = ("pass", "pwd", "secret", "token", "key")


def is_secret_key(name: str) -> bool:
    """Whether a key (dict key, ``key=``, ``--key``) is named like a secret (module doc)."""
    lowered = name.lower()
    if not any(h in lowered for h in _KEY_HINTS):
        return False
    words = [w.lower() for w in _WORDS.split(name) if w]
    while words and (words[-1] in _QUALIFIERS or words[-1].isdigit()):
        words.pop()
    if not words:
        return False
    last = words[-1].rstrip("0123456789")  # password2, token1
    if last.endswith(_SIMPLE):
        return True
    return (words[-2] + last if len(words) > 1 else last).endswith(_COMPOUND)


# ---------------------------------------------------------------------------------------------
# Built-in patterns

# A value: escaped-quoted (JSON inside a string), quoted (closing quote optional: an unclosed
# quote redacts to the end of the line), or bare (to whitespace, a quote or '&').
_VALUE = (
    r"(?:\\(?P<eq>[\"'])(?P<ev>[^\n]*?)(?:\\(?P=eq)|$)"
    r"|\"(?P<dv>(?:[^\"\\\n]|\\.)*)\"?"
    r"|'(?P<sv>(?:[^'\\\n]|\\.)*)'?"
    r"|(?P<bv>(?:[^\s\"'&\\]|\\(?![nrt\"'\\]))+))"
)
# Matched at the start of a word that contains a key hint (found with str.find, see _kv_sub):
# a regex searching for the hint itself cost 20 us per 80-character line on the dev machine.
_KV_AT = re.compile(rf"(?P<key>[\w.-]+)(?:\\?[\"'])?[ \t]*(?:==|:=|=>|[:=])[ \t]*{_VALUE}")
_FLAG_AT = re.compile(rf"(?P<key>--?[\w.-]+)[ \t]+(?=[^\s-])(?!\\[nrt])(?:{_VALUE})")
_WORD_CHARS = frozenset("_.-")
_AUTH = re.compile(
    r"(?<![\w-])(?P<head>(?:proxy-)?authorization(?:\\?[\"'])?[ \t]*[:=][ \t]*(?:\\?[\"'])?"
    r"(?:(?:bearer|basic|digest|token|negotiate|ntlm|bot|aws4-hmac-sha256)[ \t]+)?)"
    r"(?P<cred>[^\r\n\"'\\]*[^\s\"'\\])",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?<![\w-])(?P<head>[Bb]earer[ \t]+)(?P<cred>[A-Za-z0-9\-._~+/]{8,}=*)")
_URL = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s\"'<>]*):(?P<pw>[^/?#\s\"'<>]+)@")
_AWS_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
_PRIVATE_KEY = re.compile(
    r"(?P<begin>-----BEGIN (?P<kind>[A-Z0-9 ]*?)PRIVATE KEY(?: BLOCK)?-----)"
    r"(?P<body>.*?)(?P<end>-----END (?P=kind)PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
_TOKENS = re.compile(
    r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b"
    r"|\bgithub_pat_[A-Za-z0-9_]{22,255}"
    r"|\bglpat-[A-Za-z0-9_-]{20,}"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"
    r"|\bsk[-_](?:live_|test_|proj-|ant-)?[A-Za-z0-9_-]{20,}"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
)


def _value_span(m: re.Match[str]) -> tuple[int, int]:
    for group in ("ev", "dv", "sv", "bv"):
        if m.group(group) is not None:
            return m.span(group)
    return m.end(), m.end()  # pragma: no cover - the pattern always sets one


def _kv_sub(text: str, low: str) -> str:
    """Apply the key/value rule: every word containing a key hint is tried as ``key=value``
    and, when it starts with ``-`` after whitespace, as ``--key value``."""
    starts: set[int] = set()
    for hint in _KEY_HINTS:
        i = low.find(hint)
        while i >= 0:
            j = i
            while j > 0 and (text[j - 1].isalnum() or text[j - 1] in _WORD_CHARS):
                j -= 1
            starts.add(j)
            i = low.find(hint, i + len(hint))
    out: list[str] = []
    pos = 0
    for j in sorted(starts):
        if j < pos:
            continue  # inside a value already replaced
        m = _KV_AT.match(text, j)
        if m is None and text[j] == "-" and (j == 0 or text[j - 1].isspace()):
            m = _FLAG_AT.match(text, j)
        if m is None or not is_secret_key(m.group("key")):
            continue
        start, end = _value_span(m)
        if start == end:  # password="" holds nothing to hide
            continue
        out.append(text[pos:start])
        out.append(REDACTED)
        pos = end
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _keep_head(group: str) -> Any:
    def sub(m: re.Match[str]) -> str:
        s = m.start()
        a, b = m.span(group)
        return m.string[s:a] + REDACTED + m.string[b : m.end()]

    return sub


def _private_key(m: re.Match[str]) -> str:
    return m.group("begin") + REDACTED + m.group("end")


# Each built-in: a gate (cheap substring tests on the lowered and the original text) and the
# function applying it. A text no gate lets through costs only the gates: that is the fast
# path every message and metadata value takes. An ``or`` chain of ``in`` tests was the cheapest
# form measured; a regex alternation, even on lowered text, cost 2-20x more.
_Gate = Callable[[str, str], bool]
_Apply = Callable[[str, str], str]


def _regex(pattern: re.Pattern[str], repl: Any) -> _Apply:
    return lambda text, low: pattern.sub(repl, text)


def _both(first: _Apply, second: _Apply) -> _Apply:
    return lambda text, low: second(first(text, low), low)


_RULES: dict[str, tuple[_Gate, _Apply]] = {
    "private_key": (lambda t, low: "PRIVATE KEY" in t, _regex(_PRIVATE_KEY, _private_key)),
    "url_credentials": (lambda t, low: "://" in t and "@" in t, _regex(_URL, _keep_head("pw"))),
    "authorization": (
        lambda t, low: "auth" in low or "earer" in t,
        _both(_regex(_AUTH, _keep_head("cred")), _regex(_BEARER, _keep_head("cred"))),
    ),
    "key_value": (
        lambda t, low: (
            "key" in low or "token" in low or "pass" in low or "secret" in low or "pwd" in low
        ),
        _kv_sub,
    ),
    "aws_access_key": (lambda t, low: "AKIA" in t or "ASIA" in t, _regex(_AWS_ID, REDACTED)),
    "token_shapes": (
        lambda t, low: (
            "eyJ" in t
            or "AIza" in t
            or "xox" in t
            or "glpat-" in t
            or "sk-" in t
            or "sk_" in t
            or ("gh" in t and "_" in t)
            or "github_pat_" in t  # holds no "gh" of its own
        ),
        _regex(_TOKENS, REDACTED),
    ),
}


def _maybe_secret(text: str, low: str) -> bool:
    """The fast path: False when no built-in gate can open (the union of the gates above,
    inlined: six gate calls cost more than the tests themselves)."""
    return (
        "key" in low
        or "token" in low
        or "pass" in low
        or "secret" in low
        or "pwd" in low
        or "auth" in low
        or "earer" in text
        or "://" in text
        or "AKIA" in text
        or "ASIA" in text
        or "eyJ" in text
        or "AIza" in text
        or "xox" in text
        or "glpat-" in text
        or "sk-" in text
        or "sk_" in text
        or ("gh" in text and "_" in text)
        or "github_pat_" in text
    )


def _user_sub(pattern: re.Pattern[str]) -> Any:
    if not pattern.groups:
        return REDACTED

    def sub(m: re.Match[str]) -> str:
        # Replace every group that took part, outermost first; nested groups fall inside.
        spans = sorted(
            (m.span(i) for i in range(1, pattern.groups + 1) if m.span(i)[0] >= 0),
            key=lambda s: (s[0], -s[1]),
        )
        out = []
        pos = m.start()
        for a, b in spans:
            if a < pos or a == b:
                continue
            out.append(m.string[pos:a])
            out.append(REDACTED)
            pos = b
        out.append(m.string[pos : m.end()])
        return "".join(out)

    return sub


class Redactor:
    """Replaces secrets with ``[REDACTED]`` in strings and in nested metadata.

    ``patterns``: extra regexes (strings or compiled); ``disable``: names from
    :data:`BUILTIN_PATTERNS` to turn off. Raises ``ValueError`` at construction for a pattern
    that does not compile or an unknown name; after that, ``redact`` and ``redact_obj`` never
    raise (a failure inside returns ``[REDACTED]`` for the value: hiding too much is the safe
    side). Thread-safe: no state changes after construction except a bounded memo.
    """

    CACHE_SIZE = 4096
    """Strings found clean are remembered (up to this many) so repeated metric names, paths and
    keys skip even the pre-check."""

    def __init__(
        self,
        patterns: Iterable[str | re.Pattern[str]] = (),
        *,
        disable: Iterable[str] = (),
    ) -> None:
        if isinstance(patterns, (str, re.Pattern)):
            patterns = (patterns,)
        if isinstance(disable, str):
            disable = (disable,)
        off = set(disable)
        unknown = off.difference(BUILTIN_PATTERNS)
        if unknown:
            raise ValueError(
                f"unknown built-in redaction pattern(s) {sorted(unknown)}; "
                f"known: {', '.join(BUILTIN_PATTERNS)}"
            )
        self.disabled = frozenset(off)
        self._rules = [_RULES[n] for n in BUILTIN_PATTERNS if n not in off]
        self._keys = "key_value" not in off
        self._auth_key = "authorization" not in off
        user: list[tuple[re.Pattern[str], Any]] = []
        for i, p in enumerate(patterns):
            if isinstance(p, re.Pattern):
                compiled = p
            elif isinstance(p, str):
                try:
                    compiled = re.compile(p)
                except re.error as exc:
                    raise ValueError(
                        f"redaction pattern {i} is not a valid regular expression: {p!r} ({exc})"
                    ) from None
            else:
                raise ValueError(
                    f"redaction pattern {i} must be a regex string or compiled pattern, not "
                    f"{type(p).__name__}: {p!r}"
                )
            if not isinstance(compiled.pattern, str):
                raise ValueError(f"redaction pattern {i} must be a str pattern, not bytes: {p!r}")
            if compiled.search(""):
                # A pattern matching the empty string would insert [REDACTED] everywhere.
                raise ValueError(f"redaction pattern {i} matches the empty string: {p!r}")
            user.append((compiled, _user_sub(compiled)))
        self._user = user
        self._clean: dict[str, None] = {}

    @property
    def patterns(self) -> list[str]:
        """The user patterns, as regex source strings."""
        return [p.pattern for p, _ in self._user]

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``[REDACTED]``; never raises."""
        if not isinstance(text, str):
            return text
        try:
            if text in self._clean:
                return text
            out = text
            low = text.lower()
            rules = self._rules if _maybe_secret(text, low) else ()
            for gate, apply in rules:
                # Gates look at the original text: a replacement never opens a later gate
                # that the text itself would not have opened.
                if gate(text, low):
                    out = apply(out, out.lower() if out is not text else low)
            for pattern, repl in self._user:
                out = pattern.sub(repl, out)
            if out is text or out == text:
                if len(text) <= 512:  # long texts rarely repeat; keep the memo small
                    if len(self._clean) >= self.CACHE_SIZE:
                        self._clean.clear()
                    self._clean[text] = None
                return text
            return out
        except Exception:  # RecursionError, MemoryError, a hostile str subclass
            return REDACTED

    def is_secret_key(self, key: Any) -> bool:
        """Whether a dict key's value is replaced whole by :meth:`redact_obj`."""
        if not self._keys or not isinstance(key, str):
            return False
        if self._auth_key and key.lower() in ("authorization", "proxy-authorization"):
            return True
        return is_secret_key(key)

    def redact_obj(self, obj: Any) -> Any:
        """A redacted copy of ``obj``: dicts, lists, tuples and sets recursively.

        A value under a secret-named key is replaced whole (except None); in a list of strings,
        the element after a secret flag (``["--password", "x"]``) is replaced; every other
        string is scanned with :meth:`redact`. Paths become their redacted string; objects JSON
        cannot encode become their redacted ``repr`` (what the log would show for them
        anyway). Cycles become ``"<cycle>"``. Never raises.
        """
        try:
            return self._obj(obj, set(), 0)
        except Exception:
            return REDACTED

    def _obj(self, obj: Any, path: set[int], depth: int) -> Any:
        if isinstance(obj, str):
            return self.redact(obj)
        if obj is None or isinstance(obj, (bool, int, float)):
            return obj
        if depth > 64:
            return REDACTED
        if isinstance(obj, (Mapping, list, tuple, set, frozenset)):
            if id(obj) in path:
                return "<cycle>"
            path.add(id(obj))
            try:
                if isinstance(obj, Mapping):
                    out: dict[Any, Any] = {}
                    for k, v in obj.items():
                        key = self.redact(k) if isinstance(k, str) else k
                        if v is not None and self.is_secret_key(k):
                            out[key] = REDACTED
                        else:
                            out[key] = self._obj(v, path, depth + 1)
                    return out
                items = [self._obj(v, path, depth + 1) for v in obj]
                if self._keys and isinstance(obj, (list, tuple)):
                    self._argv(obj, items)
                return tuple(items) if isinstance(obj, tuple) else items
            finally:
                path.discard(id(obj))
        if isinstance(obj, os.PathLike):
            try:
                return self.redact(os.fsdecode(obj))
            except Exception:
                pass  # a hostile __fspath__: fall through to repr
        from ..events import json_default

        return self.redact(str(json_default(obj)))

    @staticmethod
    def _argv(src: list[Any] | tuple[Any, ...], items: list[Any]) -> None:
        """``["--password", "x"]``: the element after a secret flag without ``=`` is secret."""
        for i in range(len(src) - 1):
            flag = src[i]
            if (
                isinstance(flag, str)
                and flag.startswith("-")
                and "=" not in flag
                and isinstance(src[i + 1], str)
                and is_secret_key(flag)
            ):
                items[i + 1] = REDACTED
