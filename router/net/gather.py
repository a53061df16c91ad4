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
    """Write every chunk in order through `write` (which returns how many bytes it took)."""
    pending = chunks
    while pending:
        batch = pending if len(pending) <= MAX_IOVEC else pending[:MAX_IOVEC]
        written = write(batch)
        if batch is pending and written == sum(map(len, pending)):
            return  # what mostly happens: one call took them all
        pending = _views_after(pending, written)


def _views_after(chunks: Sequence[bytes | memoryview], skipped: int) -> list[memoryview]:
    """Views of what `chunks` hold past their first `skipped` bytes (empty chunks left out)."""
    views = [memoryview(chunk) for chunk in chunks if len(chunk)]
    while views and skipped >= len(views[0]):
        skipped -= len(views.pop(0))
    if skipped:
        views[0] = views[0][skipped:]
    return views
