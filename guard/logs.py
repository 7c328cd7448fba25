"""JSON logs with the request id on every line, and a filter that masks card numbers."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any


def mask_pans(text: str) -> str:
    """Mask card numbers (typed or spoken), CVCs, expiry dates and SSNs: the redaction detector."""
    from guard.pci.redact import mask_text

    return mask_text(text)


class PanMaskingFilter(logging.Filter):
    """Last line of defence: no log record leaves with a card number in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message, mask it, and freeze the result on the record."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not drop the record
            message = str(record.msg)
        record.msg = mask_pans(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Exception text may quote input: format it now, masked, and drop the live object.
            record.exc_text = mask_pans(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def _request_id() -> str | None:
    try:
        from flask import g, has_request_context
    except ImportError:  # pragma: no cover
        return None
    if has_request_context():
        c = g.get("guard_ctx")
        return getattr(c, "request_id", None)
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialize a (masked) record."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _request_id(),
        }
        if record.exc_text:
            out["exc"] = record.exc_text
        elif record.exc_info:
            out["exc"] = mask_pans(self.formatException(record.exc_info))
        return mask_pans(json.dumps(out, default=str))


def configure_logging(level: str, json_logs: bool = True) -> None:
    """Install the JSON handler and PAN filter on the root logger (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level)
    for h in root.handlers:
        if getattr(h, "guard_handler", False):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.guard_handler = True  # type: ignore[attr-defined]
    handler.addFilter(PanMaskingFilter())
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    # Werkzeug's and gunicorn's own loggers propagate to root: they pass through the filter.
    for name in ("werkzeug", "gunicorn.error", "gunicorn.access"):
        logging.getLogger(name).addFilter(PanMaskingFilter())
    # Alembic narrates every migration context at INFO (readiness probes create one).
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
