"""RQ workers for the agent pipeline (queues ``facts``, ``generation``, ``verification``).

``python -m workers`` (``workers/__main__.py``) runs one worker process; ``workers.tasks.run_job``
is the function RQ imports and calls with a job id. Both are thin: every decision about a job
(gate, claim, heartbeat, cancellation, fenced commit, follow-up jobs, reaping) lives in
``core.job_runner``, so a job behaves the same here as on the in-process executor.
"""

WORKER_NAME_ENV = "WORKBENCH_WORKER_NAME"
"""Environment variable ``python -m workers`` sets to its worker's name, for ``tasks.run_job``."""
