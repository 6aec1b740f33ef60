"""RQ workers for the agent pipeline (queues ``facts``, ``generation``, ``verification``).

Until the worker issue lands, every job runs in-process through ``core.jobs.run_inline`` and
``python -m workers`` says so instead of pretending to work.
"""
