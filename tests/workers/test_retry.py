"""The back-off policy: doubling from `backoff`, capped at `max_backoff`, shortened by bounded jitter."""

from __future__ import annotations

import pytest

from router.config import RetryPolicy
from workers.retry import JITTER, backoff, next_retry

POLICY = RetryPolicy(attempts=5, backoff=2.0, max_backoff=20.0)


@pytest.mark.parametrize("failures, expected", [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 20.0), (50, 20.0), (5000, 20.0)])
def test_doubles_then_stays_at_the_ceiling(failures, expected):
    assert backoff(POLICY, failures, 0.0) == expected


@pytest.mark.parametrize("failures", [1, 2, 3, 7])
def test_jitter_shortens_by_at_most_its_fraction(failures):
    longest = backoff(POLICY, failures, 0.0)
    for fraction in (0.0, 0.25, 0.5, 0.999999):
        delay = backoff(POLICY, failures, fraction)
        assert longest * (1 - JITTER) <= delay <= longest
    assert backoff(POLICY, failures, 0.5) == pytest.approx(longest * (1 - JITTER / 2))


def test_gives_up_after_the_attempts():
    assert next_retry(POLICY, 1, 0.0) == 2.0
    assert next_retry(POLICY, 4, 0.0) == 16.0
    assert next_retry(POLICY, 5, 0.0) is None  # five attempts made: the job is dead
    assert next_retry(RetryPolicy(attempts=1), 1, 0.0) is None


def test_a_back_off_needs_a_failure():
    with pytest.raises(ValueError):
        backoff(POLICY, 0, 0.0)
