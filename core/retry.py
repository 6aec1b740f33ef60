"""The retry policy, one rule per failure class (the seed's table), as pure functions.

The gateway is the only retry loop in the product (the SDKs' own retries are off), so what
is retried, how often and after what wait is decided here and nowhere else:

================  ========  ==============================================================
failure class     retries   wait before the next attempt
================  ========  ==============================================================
timeout           2         exponential backoff with full jitter from 0.5 s
server_error      2         exponential backoff with full jitter from 1 s (5xx, connection)
rate_limit        4         the provider's Retry-After when it sends one, else backoff from
                            1 s with full jitter
invalid_json      1         none: the same request again at once
contract          0         a well-formed answer that breaks the contract is not retried
rejected          0         400/401/403/404: the request itself must change
================  ========  ==============================================================

Every wait is capped by ``WORKBENCH_RETRY_MAX_DELAY_S``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryRule:
    retries: int
    """How many times a call failing this way is tried again (attempts = retries + 1)."""
    base_delay_s: float
    """First backoff step, seconds; step n waits up to base * 2**(n-1)."""
    honour_retry_after: bool = False
    """Wait what the provider asked for, when it asked."""


RULES: dict[str, RetryRule] = {
    "timeout": RetryRule(retries=2, base_delay_s=0.5),
    "server_error": RetryRule(retries=2, base_delay_s=1.0),
    "rate_limit": RetryRule(retries=4, base_delay_s=1.0, honour_retry_after=True),
    "invalid_json": RetryRule(retries=1, base_delay_s=0.0),
    "contract": RetryRule(retries=0, base_delay_s=0.0),
    "rejected": RetryRule(retries=0, base_delay_s=0.0),
}
NEVER = RetryRule(retries=0, base_delay_s=0.0)


def rule_for(failure_class: str) -> RetryRule:
    return RULES.get(failure_class, NEVER)


def next_delay(
    failure_class: str,
    retries_done: int,
    *,
    retry_after: float | None = None,
    max_delay_s: float = 30.0,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before trying again after ``retries_done`` retries, or None to give up."""
    rule = rule_for(failure_class)
    if retries_done >= rule.retries:
        return None
    if rule.honour_retry_after and retry_after is not None:
        return min(max(retry_after, 0.0), max_delay_s)
    if rule.base_delay_s <= 0:
        return 0.0
    # Full jitter: concurrent callers that failed together do not come back together.
    ceiling = min(rule.base_delay_s * 2**retries_done, max_delay_s)
    return (rng or random).uniform(0, ceiling)
