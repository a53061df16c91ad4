"""Writing a list of buffers with gathering system calls (sendmsg, writev) instead of joining them.

`write_gathered(write, chunks)` calls `write` with views of at most
`MAX_IOVEC` chunks at a time and resumes after a partial write, until every
byte is written. The driver sends PDUs this way; a received data set is saved
this way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

MAX_IOVEC = 1024  # buffers one call may gather (IOV_MAX on Linux)


def write_gathered(write: Callable[[list[memoryview]], int], chunks: Sequence[bytes | memoryview]) -> None:
    """Write every chunk in order through `write` (which returns how many bytes it took)."""
    views = [memoryview(chunk) for chunk in chunks if len(chunk)]
    while views:
        written = write(views[:MAX_IOVEC])
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]
