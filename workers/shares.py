"""How a DICOM destination's associations are shared among the workers.

`max_associations` is the router's limit towards a destination, not each
worker's: worker `index` of `workers` runs `association_share` delivery
threads (one association each) for it, `allowed // workers` plus one for the
first `allowed % workers` workers, so the shares add up to `allowed`. When a
destination allows fewer associations than there are workers, the workers
without a share record the destination's jobs for a worker with one
(`delivering_worker`) and tell it on the bus (`router.bus.JobsWaiting`), so
the jobs start at once rather than at that worker's next look at the queue.
"""

from __future__ import annotations


def association_share(allowed: int, workers: int, index: int) -> int:
    """Delivery threads (associations) worker `index` runs for a destination allowing `allowed` of them."""
    return allowed // workers + (1 if index < allowed % workers else 0)


def delivering_worker(allowed: int, workers: int, index: int) -> int:
    """The worker that delivers the jobs worker `index` records for such a destination: itself if it has a share."""
    return index if association_share(allowed, workers, index) else index % allowed
