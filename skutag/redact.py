"""Passwords out of everything skutag prints: messages, logs and ``--json`` output.

A URL's password (``postgresql+psycopg://postgres:S3cret@db/skutag``, ``amqp://guest:guest@mq//``) is
replaced by ``***`` wherever such a URL appears in a text.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*):(?P<password>[^@\s'\"/]*)@")


def redact(text: Any) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('head')}:***@", str(text))


def redacted_url(url: str | None) -> str:
    """A URL for messages: without its password; "(default)" for none."""
    return redact(url) if url else "(default)"


def redact_json(value: Any) -> Any:
    """A JSON-able value with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_json(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that takes passwords out of a record's message (and its exception text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Redact every record that reaches ``logger``'s handlers (the root logger's by default)."""
    target = logger or logging.getLogger()
    handlers = target.handlers or []
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())
