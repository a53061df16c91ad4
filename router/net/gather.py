"""Writing a list of buffers with gathering system calls (sendmsg, writev) instead of joining them,
and parts of files with sendfile.

`write_gathered(write, chunks)` calls `write` with at most `MAX_IOVEC` chunks
at a time and resumes after a partial write (with views of what is left), until
every byte is written. The driver sends PDUs this way; a received data set is saved
this way. `send_with_regions(sock, chunks)` also takes `FileRegion`s among the
chunks: the kernel copies those from the file to the socket (sendfile), and they
never pass through a buffer of ours.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_IOVEC = 1024  # buffers one call may gather (IOV_MAX on Linux)


@dataclass(frozen=True)
class FileRegion:
    """`length` bytes of the open file `fd` from `offset`; cut like a memoryview (`region[a:b]`)."""

    fd: int
    offset: int
    length: int

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, part: slice) -> FileRegion:
        start, stop, step = part.indices(self.length)
        if step != 1:
            raise ValueError("a file region is cut into contiguous parts only")
        return FileRegion(self.fd, self.offset + start, max(0, stop - start))


def send_with_regions(sock: socket.socket, chunks: Sequence[bytes | memoryview | FileRegion]) -> None:
    """Send every chunk in order on a blocking TCP socket: buffers gathered (sendmsg), file regions
    by sendfile. Buffers just before a region are held back (MSG_MORE) to leave in one segment with
    its start. OSError if a region's file ends before the region does."""
    buffers: list[bytes | memoryview] = []
    for chunk in chunks:
        if not isinstance(chunk, FileRegion):
            buffers.append(chunk)
            continue
        if buffers:
            write_gathered(lambda batch: sock.sendmsg(batch, (), socket.MSG_MORE), buffers)
            buffers = []
        _send_region(sock, chunk)
    if buffers:
        write_gathered(sock.sendmsg, buffers)


def _send_region(sock: socket.socket, region: FileRegion) -> None:
    offset, left = region.offset, region.length
    while left:
        sent = os.sendfile(sock.fileno(), region.fd, offset, left)
        if not sent:
            raise OSError(f"the file ended {left} bytes short of the region to send")
        offset += sent
        left -= sent


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
