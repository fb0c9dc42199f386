"""Secrets that must never reach a file: API keys, Hub tokens and credentials written into URLs.

Whoever learns a secret registers it here (`register`); every write to disk goes through `scrub` (run-dir files via
`pipeline.io`, the response cache, the usage ledger) and every log record through `ScrubFilter`, so an endpoint that
echoes the key back, or a `--base-url https://user:pass@host`, leaves `***` on disk and never the secret itself.
"""

from __future__ import annotations

import json
import logging
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Shorter values are not scrubbed everywhere: replacing "pass" in every row would damage the data. URLs are
# redacted by structure instead (`redact_url`), whatever the length of their credentials.
MIN_LENGTH = 8
_SECRET_PARAMS = {"key", "api_key", "api-key", "apikey", "token", "access_token", "auth", "password", "secret", "sig",
                  "signature", "code"}

_lock = threading.Lock()
_secrets: set[str] = set()
_forms: list[tuple[bytes, bytes]] = []  # (secret as bytes, mask) in every form it may be written in, longest first


def register(value: str | None) -> None:
    """Scrub `value` from everything this process writes from now on (ignored when empty or too short)."""
    if not value or len(value) < MIN_LENGTH or value in _secrets:
        return
    with _lock:
        _secrets.add(value)
        forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
        _forms.extend((f.encode("utf-8"), MASK.encode()) for f in forms)
        _forms.sort(key=lambda pair: -len(pair[0]))


def register_url(url: str | None) -> None:
    """Register the credentials a URL carries (user, password, key-like query values)."""
    for value in url_credentials(url):
        register(value)


def scrub(text: str) -> str:
    """`text` with every registered secret replaced by `***`.

    >>> register("sk-test-0123456789")
    >>> scrub('{"echo": "key sk-test-0123456789"}')
    '{"echo": "key ***"}'
    """
    if not _forms:
        return text
    return scrub_bytes(text.encode("utf-8")).decode("utf-8")


def scrub_bytes(data: bytes) -> bytes:
    """`data` with every registered secret (raw or JSON-escaped) replaced by `***`."""
    for secret, mask in _forms:
        if secret in data:
            data = data.replace(secret, mask)
    return data


def url_credentials(url: str | None) -> list[str]:
    """The user name, password and key-like query values in a URL.

    >>> url_credentials("https://me:hunter22@host/v1?api-key=abc&version=2")
    ['me', 'hunter22', 'abc']
    """
    if not url:
        return []
    try:
        parts = urlsplit(url)
        found = [v for v in (parts.username, parts.password) if v]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_PARAMS and v]
    except ValueError:
        return []
    return found


def redact_url(url: str) -> str:
    """`url` with its user info and key-like query values replaced by `***` (for config files and messages).

    >>> redact_url("https://me:hunter22@host:8000/v1?api-key=abc&version=2")
    'https://***@host:8000/v1?api-key=%2A%2A%2A&version=2'
    >>> redact_url("http://localhost:8000/v1")
    'http://localhost:8000/v1'
    """
    try:
        parts = urlsplit(url)
        if not parts.username and not parts.password and not url_credentials(url):
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = (f"{MASK}@" if parts.username or parts.password else "") + host + (f":{parts.port}" if parts.port else "")
        query = urlencode([(k, MASK if k.lower() in _SECRET_PARAMS else v) for k, v in parse_qsl(parts.query)])
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return MASK


class ScrubFilter(logging.Filter):
    """Scrubs secrets from log records (message and arguments), wherever the handler writes them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _forms:
            record.msg = scrub(record.getMessage())
            record.args = None
        return True


def install_log_filter() -> None:
    """Scrub every record that reaches the root logger's handlers."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())
