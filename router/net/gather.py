"""Writing a list of buffers with gathering system calls (sendmsg, writev) instead of joining them.

`write_gathered(write, chunks)` calls `write` with at most `MAX_IOVEC` chunks
at a time and resumes after a partial write (with views of what is left), until
every byte is written. The driver sends PDUs this way; a received data set is saved
this way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

MAX_IOVEC = 1024  # buffers one call may gather (IOV_MAX on Linux)


def write_gathered(write: Callable[[Sequence[bytes | memoryview]], int], chunks: Sequence[bytes | memoryview]) -> None:
    """Write every chunk in order through `write` (which returns how many bytes it took); OSError
    if a write takes nothing while bytes remain."""
    pending = chunks
    while pending:
        batch = pending if len(pending) <= MAX_IOVEC else pending[:MAX_IOVEC]
        written = write(batch)
        if batch is pending and written == sum(map(len, pending)):
            return  # what mostly happens: one call took them all
        rest = _views_after(batch, written)
        if not written and rest:
            raise OSError("a gathered write took no bytes")
        pending = [*rest, *pending[len(batch) :]]


def _views_after(chunks: Sequence[bytes | memoryview], skipped: int) -> list[memoryview]:
    """Byte views of what `chunks` hold past their first `skipped` bytes (empty ones left out)."""
    views = [view for view in (memoryview(chunk).cast("B") for chunk in chunks) if len(view)]
    while views and skipped >= len(views[0]):
        skipped -= len(views.pop(0))
    if skipped:
        views[0] = views[0][skipped:]
    return views
