"""write_gathered: every byte written once, in order, whatever the writer takes per call."""

from __future__ import annotations

import array

import pytest

from router.net.gather import MAX_IOVEC, write_gathered


class Writer:
    """A gathering writer that takes at most `most` bytes per call and records each call."""

    def __init__(self, most: int | None = None) -> None:
        self.most = most
        self.written = bytearray()
        self.calls: list[int] = []  # chunks handed to each call

    def __call__(self, chunks) -> int:
        assert len(chunks) <= MAX_IOVEC
        self.calls.append(len(chunks))
        data = b"".join(chunks)
        taken = data if self.most is None else data[: self.most]
        self.written += taken
        return len(taken)


def test_one_call_when_the_writer_takes_everything():
    writer = Writer()
    chunks = [b"abc", memoryview(b"defg"), b"", b"h"]
    write_gathered(writer, chunks)
    assert bytes(writer.written) == b"abcdefgh" and writer.calls == [4]


@pytest.mark.parametrize("most", [1, 2, 3, 5, 8])
def test_partial_writes_resume_where_they_stopped(most):
    writer = Writer(most)
    chunks = [b"abc", b"", memoryview(b"defg"), b"h", b"ijklmnop"]
    write_gathered(writer, chunks)
    assert bytes(writer.written) == b"abcdefghijklmnop"


def test_more_chunks_than_one_call_may_gather():
    writer = Writer()
    chunks = [bytes([n % 256]) for n in range(2 * MAX_IOVEC + 5)]
    write_gathered(writer, chunks)
    assert bytes(writer.written) == b"".join(chunks)
    assert writer.calls == [MAX_IOVEC, MAX_IOVEC, 5]


def test_nothing_to_write():
    writer = Writer()
    write_gathered(writer, [])
    write_gathered(writer, [b"", b""])
    assert writer.written == b""


@pytest.mark.parametrize("most", [1, 7, 1000])
def test_partial_writes_over_more_chunks_than_one_call_may_gather(most):
    writer = Writer(most)
    chunks = [bytes([n % 256]) * (n % 5) for n in range(2 * MAX_IOVEC + 5)]
    write_gathered(writer, chunks)
    assert bytes(writer.written) == b"".join(chunks)


def test_a_view_of_wider_items_is_written_byte_for_byte():
    writer = Writer(3)
    wide = memoryview(array.array("H", [1, 2, 515]))
    write_gathered(writer, [b"x", wide, b"yz"])
    assert bytes(writer.written) == b"x" + wide.tobytes() + b"yz"


def test_a_write_that_takes_nothing_is_an_error_not_a_hang():
    with pytest.raises(OSError, match="took no bytes"):
        write_gathered(lambda chunks: 0, [b"data"])
