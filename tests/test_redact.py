"""Tests for atroz_monitor.record.redact: secret shapes, look-alikes, metadata, user patterns."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor.record.redact import BUILTIN_PATTERNS, REDACTED, Redactor, is_secret_key

R = Redactor()

# (text, the secret that must not survive). Fake values only: none of these is a real credential.
SECRETS: list[tuple[str, str]] = [
    ("password=hunter2", "hunter2"),
    ("db_password: 'Tr0ub4dor&3'", "Tr0ub4dor&3"),
    ('{"password": "correct horse battery", "user": "bob"}', "correct horse battery"),
    ("PGPASSWORD=s3cr3t-pg psql -h db", "s3cr3t-pg"),
    ("MYSQL_PWD=my5qlpw mysql", "my5qlpw"),
    ("passwd=abcpasswd1", "abcpasswd1"),
    ("export CLIENT_SECRET=cl13nt-s3cr3t", "cl13nt-s3cr3t"),
    ("GITHUB_TOKEN=gh-token-value-1", "gh-token-value-1"),
    ("sessionToken=sess10nT0k3n", "sess10nT0k3n"),
    ("refresh_token: 'r3fr3sh'", "r3fr3sh"),
    ("api_key=ak-123456", "ak-123456"),
    ("apikey: K3YV4LU3", "K3YV4LU3"),
    ("X-Api-Key: xapik3y789", "xapik3y789"),
    ("api-key=dash-k3y", "dash-k3y"),
    ("access_key = 4cc3ssk3y", "4cc3ssk3y"),
    ("private_key='pr1v4t3'", "pr1v4t3"),
    ("SECRET_KEY_BASE=r41ls-s3cr3t-b4s3", "r41ls-s3cr3t-b4s3"),
    ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
    ("found AKIAIOSFODNN7EXAMPLE in config", "AKIAIOSFODNN7EXAMPLE"),
    ("temp creds ASIAY34FZKBOKMUTVV7A ok", "ASIAY34FZKBOKMUTVV7A"),
    ("--password hunter3", "hunter3"),
    ("--password=hunter4", "hunter4"),
    ("--db-password 'quoted secret'", "quoted secret"),
    ("--token=t0k3n-flag", "t0k3n-flag"),
    ("Authorization: Bearer abc.def.ghi-bearer", "abc.def.ghi-bearer"),
    ("authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("curl -H 'Authorization: token ghtok3n' x", "ghtok3n"),
    ("Proxy-Authorization: Basic cHJveHk6cHc=", "cHJveHk6cHc="),
    ("sent Bearer 0123456789abcdefXYZ to api", "0123456789abcdefXYZ"),
    ("postgres://admin:pa55w0rd@db:5432/app", "pa55w0rd"),
    ("redis://:r3d1spw@cache:6379/0", "r3d1spw"),
    ("https://user:p@ss-with-at@host/path", "p@ss-with-at"),
    ("url?access_token=qu3ryt0k&page=2", "qu3ryt0k"),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\nZz9f0Q==\n"
        "-----END RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA7bq",
    ),
    ("key: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE [cut]", "b3BlbnNzaC1rZXktdjE"),
    (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF0\n-----END PGP PRIVATE KEY BLOCK-----",
        "lQOYBF0",
    ),
    ("token ghp_" + "A1b2C3d4E5" * 4, "A1b2C3d4E5A1b2"),
    ("xoxb-123456789012-abcdefghijkl", "abcdefghijkl"),
    # Token shapes alone on their line: no keyword ("token", "key") to catch them instead.
    ("clone with glpat-ABCdef1234567890xyzW12 now", "ABCdef1234567890xyzW12"),
    ("maps AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW done", "SyA1b2C3d4E5f6G7h8I9j0Kl"),
    ("push github_pat_11ABCDEFX0123456789_abcdefXijklmnopqrstuvwxyz", "0123456789_abcdefX"),
    ("OPENAI sk-proj-" + "Zz9" * 10, "Zz9Zz9Zz9"),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
    ),
    ('{\\"password\\": \\"esc4ped\\"}', "esc4ped"),
    ('password="unclosed quote secret', "unclosed quote secret"),
    ("passphrase: long phrase", "long"),
]

# Look-alikes that must survive unchanged (the rule is in the module doc of redact.py).
SAFE: list[str] = [
    "token count 12",
    "max_tokens=4096",
    "tokens: 512",
    "num_tokens=12 token_count=7",
    "tokenizer: bert-base-uncased",
    "the password was reset by the admin",
    "passwordless=true",
    "password_policy=strict password_min_length=12",
    "private_key_path=/etc/ssl/private/key.pem",
    "key=value sort_key=name cache key: abc",
    "monkey=1 keyboard: us",
    "secretary: Jane",
    "token_type: bearer",
    "https://example.com/path?page=2",
    "email alice@example.com about the report",
    "ASIA is a continent; AKIA is not a key on its own",
    "Authorization failed for user bob",
    "Processed batch 17 of 250: 4096 documents extracted",
    "git@github.com:org/repo.git",
    "password=",
    'password=""',
    "ratio 3:1, a=b, x: y",
    "api_key_header=X-Api-Key",
]


@pytest.mark.parametrize(("text", "secret"), SECRETS, ids=[s for _, s in SECRETS])
def test_secret_shape_is_redacted(text: str, secret: str) -> None:
    """No secret of the corpus survives redaction, and the marker is there instead."""
    out = R.redact(text)
    assert secret not in out
    assert REDACTED in out


def test_corpus_sizes() -> None:
    """The corpus holds at least 30 secret shapes and 15 look-alikes."""
    assert len(SECRETS) >= 30
    assert len(SAFE) >= 15


@pytest.mark.parametrize("text", SAFE)
def test_look_alike_survives_unchanged(text: str) -> None:
    """Look-alike non-secrets are returned exactly as given."""
    assert R.redact(text) == text


def test_context_is_kept() -> None:
    """Only the secret goes: scheme, user, host, header scheme and key names stay."""
    assert R.redact("postgres://admin:pw@db:5432/app") == "postgres://admin:[REDACTED]@db:5432/app"
    assert R.redact("Authorization: Bearer abcdef") == "Authorization: Bearer [REDACTED]"
    assert (
        R.redact('{"password": "x", "user": "bob"}') == '{"password": "[REDACTED]", "user": "bob"}'
    )
    assert R.redact("a=1 password=x b=2") == "a=1 password=[REDACTED] b=2"
    assert (
        R.redact("-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----\nnext")
        == "-----BEGIN EC PRIVATE KEY-----[REDACTED]-----END EC PRIVATE KEY-----\nnext"
    )


def test_unquoted_value_runs_to_whitespace_quote_or_ampersand() -> None:
    """An unquoted value ends only at whitespace, a quote or '&': hiding a trailing ')' or ','
    is the price of never leaking the tail of a password that contains one."""
    assert R.redact("f(password=a,b) next") == "f(password=[REDACTED] next"
    assert R.redact("?token=abc&x=1") == "?token=[REDACTED]&x=1"


def test_argv_lists() -> None:
    """argv: the element after a secret flag is replaced; `--flag=value` keeps the flag."""
    argv = ["prog.py", "--password", "x", "--password=y", "--verbose", "--user", "bob"]
    assert R.redact_obj(argv) == [
        "prog.py",
        "--password",
        REDACTED,
        "--password=[REDACTED]",
        "--verbose",
        "--user",
        "bob",
    ]
    assert R.redact_obj(["--max-tokens", "12"]) == ["--max-tokens", "12"]


def test_nested_metadata() -> None:
    """Secret-named keys are replaced whole at any depth; other strings are scanned."""
    meta: dict[str, Any] = {
        "db": {"host": "db1", "password": {"v": "nested-secret"}, "port": 5432},
        "headers": [{"Authorization": "Bearer abc"}, {"Accept": "json"}],
        "dsn": "mysql://u:dsnpw@h/db",
        "apiKey": 12345,
        "token": None,
        "tags": ("a", "password=tuplepw"),
        "tokens": 512,
        Path("p"): Path("/srv/run?token=pathsecret"),
    }
    out = R.redact_obj(meta)
    assert out["db"] == {"host": "db1", "password": REDACTED, "port": 5432}
    assert out["headers"] == [{"Authorization": REDACTED}, {"Accept": "json"}]
    assert out["dsn"] == "mysql://u:[REDACTED]@h/db"
    assert out["apiKey"] == REDACTED
    assert out["token"] is None  # nothing to hide
    assert out["tags"] == ("a", "password=[REDACTED]")
    assert out["tokens"] == 512
    assert out[Path("p")] == "/srv/run?token=[REDACTED]"
    assert meta["db"]["password"] == {"v": "nested-secret"}  # the input is not modified


def test_redact_obj_cycles_and_unknown_objects() -> None:
    """A cycle becomes '<cycle>'; an object becomes its redacted repr; never raises."""

    class Conn:
        def __repr__(self) -> str:
            return "Conn(password='reprpw')"

    loop: list[Any] = [1]
    loop.append(loop)
    assert R.redact_obj(loop) == [1, "<cycle>"]
    assert R.redact_obj({"c": Conn()}) == {"c": "Conn(password='[REDACTED]')"}
    assert R.redact_obj({"s": {"password=x"}}) == {"s": ["password=[REDACTED]"]}


def test_disable_builtin() -> None:
    """A disabled built-in lets its shape through; the others still apply."""
    r = Redactor(disable=("aws_access_key",))
    assert r.redact("AKIAIOSFODNN7EXAMPLE password=x") == "AKIAIOSFODNN7EXAMPLE password=[REDACTED]"
    r = Redactor(disable=["key_value"])
    assert r.redact("password=x") == "password=x"
    assert r.redact_obj({"password": "x"}) == {"password": "x"}
    assert r.redact_obj(["--password", "x"]) == ["--password", "x"]
    assert Redactor(disable="authorization").redact_obj({"Authorization": "B x"}) == {
        "Authorization": "B x"
    }
    everything_off = Redactor(disable=BUILTIN_PATTERNS)
    assert everything_off.redact("password=x AKIAIOSFODNN7EXAMPLE") == (
        "password=x AKIAIOSFODNN7EXAMPLE"
    )


def test_disable_unknown_name_is_an_error() -> None:
    """An unknown built-in name fails at construction and lists the known ones."""
    with pytest.raises(ValueError, match="unknown built-in redaction pattern.*aws_access_key"):
        Redactor(disable=("aws_keys",))


def test_user_pattern_without_group_redacts_whole_match() -> None:
    """A user pattern without groups replaces the whole match."""
    r = Redactor([r"EMP-\d{6}"])
    assert r.redact("employee EMP-123456 joined") == "employee [REDACTED] joined"


def test_user_pattern_with_group_redacts_group_only() -> None:
    """With a group, only the group is replaced; compiled patterns are accepted."""
    r = Redactor([re.compile(r"customer=(\w+)"), r"(\d{4})-(\d{4})-\d{4}"])
    assert r.redact("customer=acme order 7") == "customer=[REDACTED] order 7"
    assert r.redact("card 1111-2222-3333") == "card [REDACTED]-[REDACTED]-3333"
    assert r.patterns == [r"customer=(\w+)", r"(\d{4})-(\d{4})-\d{4}"]


def test_user_pattern_runs_without_builtin_triggers() -> None:
    """User patterns run even on text the built-in fast path would skip."""
    r = Redactor([r"internal-\w+"])
    assert r.redact("host internal-db01 up") == "host [REDACTED] up"


def test_invalid_user_regex_names_the_pattern() -> None:
    """An invalid regex fails at construction with its index and text in the message."""
    with pytest.raises(ValueError, match=r"redaction pattern 1 .*'\(unclosed'"):
        Redactor(["ok", "(unclosed"])


def test_bad_user_patterns_rejected() -> None:
    """Non-strings and patterns matching the empty string are rejected at construction."""
    with pytest.raises(ValueError, match="regex string or compiled pattern"):
        Redactor([42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="matches the empty string"):
        Redactor([r"x*"])


def test_is_secret_key_rule() -> None:
    """The key-name rule on representative names, both ways."""
    secret = [
        "password",
        "DB_PASSWORD",
        "PGPASSWORD",
        "X-Api-Key",
        "apiKey",
        "XApiKey",
        "aws_secret_access_key",
        "private_key_id",
        "client_secret",
        "auth_token",
        "password2",
        "SECRET_KEY_BASE",
        "signing_key",
        "api_keys",
        "--token",
    ]
    plain = [
        "max_tokens",
        "tokens",
        "token_count",
        "tokenizer",
        "passwordless",
        "key",
        "password_policy",
        "private_key_path",
        "secret_name",
        "monkey",
        "token_type",
        "",
    ]
    assert [k for k in secret if not is_secret_key(k)] == []
    assert [k for k in plain if is_secret_key(k)] == []


# Fragments that make the patterns interact: hypothesis mixes them with arbitrary text.
_FRAGMENTS = st.sampled_from(
    [
        "password",
        "token",
        "=",
        ":",
        " ",
        '"',
        "'",
        "\\",
        '\\"',
        "--",
        "-",
        "@",
        "://",
        "Authorization: ",
        "Bearer ",
        "AKIA",
        "IOSFODNN7EXAMPLE",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END RSA PRIVATE KEY-----",
        "\n",
        "&",
        "https://u:p@h/",
        "[REDACTED]",
        "api_key",
        "ghp_",
        "a" * 36,
        "eyJ",
        "x" * 10,
        ".",
        "sk-",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
    ]
)
_TEXT = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=8)), max_size=20).map("".join)


@settings(max_examples=1500, deadline=None)
@given(_TEXT)
def test_redact_is_idempotent_and_never_raises(text: str) -> None:
    """redact(redact(s)) == redact(s) for any mix of secret fragments and text."""
    once = R.redact(text)
    assert isinstance(once, str)
    assert R.redact(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_redact_arbitrary_text(text: str) -> None:
    """Arbitrary unicode text: never raises, idempotent, unchanged when nothing triggers."""
    once = R.redact(text)
    assert R.redact(once) == once
    if REDACTED not in once:
        assert once == text


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _TEXT),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(
                st.one_of(_TEXT, st.sampled_from(["password", "n"])), children, max_size=4
            ),
        ),
        max_leaves=20,
    )
)
def test_redact_obj_never_raises_and_is_idempotent(obj: Any) -> None:
    """redact_obj on any nesting never raises and a second pass changes nothing."""
    once = R.redact_obj(obj)
    assert R.redact_obj(once) == once or once != once  # NaN inside compares unequal


def test_clean_message_is_fast() -> None:
    """A typical clean 80-character message takes the fast path (generous bound for CI)."""
    r = Redactor()
    msgs = [
        f"Processed batch {i} of 250: 4096 documents extracted, elapsed {i}.2s ok"
        for i in range(2000)
    ]
    t0 = time.perf_counter()
    for m in msgs:
        r.redact(m)
    per = (time.perf_counter() - t0) / len(msgs)
    assert per < 50e-6


@settings(max_examples=500, deadline=None)
@given(_TEXT)
def test_fast_path_covers_every_gate(text: str) -> None:
    """The inlined fast-path test opens whenever any built-in's own gate would."""
    from atroz_monitor.record.redact import _RULES, _maybe_secret

    low = text.lower()
    if any(gate(text, low) for gate, _ in _RULES.values()):
        assert _maybe_secret(text, low)
