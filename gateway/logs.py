"""Logging for ``openarc serve``: text or JSON lines, the request id on every line about a request.

One handler on the root logger serves OpenArc's loggers and uvicorn's (uvicorn is started without a
logging config of its own, so its records propagate here). Prompts and generated text go to the
``openarc.prompts`` logger, which is silent unless ``log_prompts`` is set.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import msgspec

from .request_ids import current_request_id

PROMPTS_LOGGER = "openarc.prompts"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being handled (``None`` outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Set ``request_id`` and ``request_tag`` (what the text format prints) on the record; keeps
        every record."""
        rid = current_request_id.get()
        record.request_id = rid
        record.request_tag = f" [{rid}]" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp, level, logger, message, and request_id / exc_info when set.

    Written here rather than taken from python-json-logger: it is a dozen lines over msgspec (already a
    dependency), with the exact field names we document.
    """

    _encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return self._encoder.encode(entry).decode()


def configure_logging(level: str, log_format: str = "text", log_prompts: bool = False) -> None:
    """Send every log record to stderr in ``log_format``; replaces handlers set up before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Asked-for prompt logging shows at any --log-level; otherwise the logger drops everything.
    logging.getLogger(PROMPTS_LOGGER).setLevel(logging.DEBUG if log_prompts else logging.CRITICAL + 1)
