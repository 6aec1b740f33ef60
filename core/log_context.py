"""Trace ids on log lines: whatever a job logs carries the trace id of the run it belongs to."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_trace_id: ContextVar[str] = ContextVar("trace_id", default="-")
_job_id: ContextVar[str] = ContextVar("job_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [trace=%(trace_id)s job=%(job_id)s] %(message)s"


class TraceFilter(logging.Filter):
    """Adds ``trace_id`` and ``job_id`` to every record (unless the call gave its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            record.trace_id = _trace_id.get()
        if not hasattr(record, "job_id"):
            record.job_id = _job_id.get()
        return True


@contextmanager
def job_context(*, trace_id: str, job_id: str) -> Iterator[None]:
    trace_token, job_token = _trace_id.set(trace_id), _job_id.set(job_id)
    try:
        yield
    finally:
        _trace_id.reset(trace_token)
        _job_id.reset(job_token)


def configure_logging(level: int = logging.INFO) -> None:
    """Log lines with their trace and job ids (workers and the CLI call this once)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(TraceFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
