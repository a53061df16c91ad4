"""The shares of a destination's associations among the workers."""

import pytest

from workers.shares import association_share, delivering_worker


@pytest.mark.parametrize(
    ("allowed", "workers", "shares"),
    [(2, 2, [1, 1]), (1, 2, [1, 0]), (3, 2, [2, 1]), (1, 4, [1, 0, 0, 0]), (6, 4, [2, 2, 1, 1]), (4, 1, [4])],
)
def test_shares_add_up_to_the_destination_limit(allowed, workers, shares):
    assert [association_share(allowed, workers, index) for index in range(workers)] == shares


@pytest.mark.parametrize(
    ("allowed", "workers", "delivering"),
    [(2, 2, [0, 1]), (1, 2, [0, 0]), (2, 5, [0, 1, 0, 1, 0]), (3, 2, [0, 1])],
)
def test_a_worker_without_a_share_hands_its_jobs_to_one_with_a_share(allowed, workers, delivering):
    assert [delivering_worker(allowed, workers, index) for index in range(workers)] == delivering
    assert all(association_share(allowed, workers, worker) for worker in delivering)
