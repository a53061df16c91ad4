"""The retry policy as a pure function: how long to wait after a failed attempt, or to give up.

A destination's `RetryPolicy` (router.config) says how many attempts a job
gets in all (the first one included), the wait before the first retry, and the
longest wait. Each wait doubles the previous one up to that ceiling, and is
then shortened by a random fraction of up to `JITTER` so that jobs that
failed together do not all come back in the same instant. The random number
is an argument: the function reads no clock and no global state.
"""

from __future__ import annotations

from router.config import RetryPolicy

JITTER = 0.2  # a wait is shortened by up to 20 %


def backoff(policy: RetryPolicy, failures: int, random_fraction: float) -> float:
    """Seconds to wait after the `failures`-th failure in a row (1, 2, ...); `random_fraction` in [0, 1)."""
    if failures < 1:
        raise ValueError(f"a back-off follows at least one failure, not {failures}")
    ceiling = min(policy.backoff * 2.0 ** min(failures - 1, 64), policy.max_backoff)
    return ceiling * (1.0 - JITTER * random_fraction)


def next_retry(policy: RetryPolicy, attempts: int, random_fraction: float) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones, or None when the policy gives up."""
    if attempts >= policy.attempts:
        return None
    return backoff(policy, attempts, random_fraction)
