"""Logging for `serve`: one line per record, as text or JSON, with secrets scrubbed.

Every record passes through `scrub()` before it is written, whatever logged it (our code,
aiohttp, the Kubernetes client): a bearer token, a `token=`/`password=` query value, the
userinfo of a URL or a PEM private key never reaches the log, even from an exception text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
REDACTED = "REDACTED"
#: a record's message is cut here: a hostile object name must not flood the log
MAX_MESSAGE = 2000

_SECRETS = (
    # Authorization headers and kubeconfig tokens
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    # key=value in URLs, headers and error texts
    (re.compile(r"(?i)\b((?:access_|id_|refresh_)?token|password|passwd|secret|api[_-]?key|"
                r"client_secret|auth)=([^&\s\"',;]+)"), r"\1=" + REDACTED),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s:]+(?::[^/@\s]*)?@"), r"\1" + REDACTED + "@"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
                re.S), "[private key " + REDACTED + "]"),
)
#: attributes of a LogRecord that are not `extra=` fields
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def scrub(text: str) -> str:
    """`text` with credentials replaced by REDACTED, cut to MAX_MESSAGE characters."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg, `extra=` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


def setup_logging(level: str = "info", fmt: LogFormat = "text") -> None:
    """Route every logger to stderr in `fmt`; replaces handlers set up before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
