"""The job function RQ runs: a module-level function taking a primitive id, nothing else."""

from __future__ import annotations

import os

from rq import get_current_job

from core import job_runner, worker_records
from core.db import get_engine
from core.executors import get_executor
from workers import WORKER_NAME_ENV

_current_job_id: str | None = None
# The job this process runs now; the worker's maintenance thread reports it (a SimpleWorker
# runs one job at a time, and rebinding a module global is atomic).


def run_job(job_id: str) -> str:
    """Run the workbench job ``job_id`` to its end; returns the state it ended in.

    A job that fails is recorded as FAILED in the jobs table and returned, not raised: RQ's own
    bookkeeping only says that the runner ran, the jobs table says how the job went.
    """
    global _current_job_id
    _current_job_id = job_id
    try:
        return job_runner.execute(get_engine(), job_id, worker=worker_name(), dispatch=get_executor().submit)
    finally:
        _current_job_id = None


def current_job_id() -> str | None:
    """The workbench job this process is running, if any."""
    return _current_job_id


def worker_name() -> str:
    """This worker's name: RQ's for the job being run, else the one ``python -m workers`` set."""
    rq_job = get_current_job()
    if rq_job is not None and rq_job.worker_name:
        return rq_job.worker_name
    return os.environ.get(WORKER_NAME_ENV) or worker_records.default_name("rq")
