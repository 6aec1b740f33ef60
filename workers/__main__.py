import sys

print(
    "RQ workers are not built yet: jobs run in-process in the workbench (core.jobs.run_inline). "
    "Leave REDIS_URL unset until the worker issue lands.",
    file=sys.stderr,
)
raise SystemExit(2)
