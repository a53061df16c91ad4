"""write_gathered: every byte written once, in order, whatever the writer takes per call;
send_with_regions: buffers and regions of files sent in order over a real socket."""

from __future__ import annotations

import array
import socket
import threading

import pytest

from router.net.gather import MAX_IOVEC, FileRegion, send_with_regions, write_gathered


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


# ---- file regions sent by the kernel ------------------------------------------------------
@pytest.fixture
def file_of_bytes(tmp_path):
    data = bytes(range(256)) * 1024  # 256 KiB, every offset tells its byte
    path = tmp_path / "data"
    path.write_bytes(data)
    with open(path, "rb") as file:
        yield file.fileno(), data


def test_a_region_cuts_like_a_memoryview(file_of_bytes):
    fd, _ = file_of_bytes
    region = FileRegion(fd, 100, 50)
    assert region[10:20] == FileRegion(fd, 110, 10)
    assert region[40:] == FileRegion(fd, 140, 10)
    assert region[45:1000] == FileRegion(fd, 145, 5)  # cut at its end, as a view is
    assert len(region[60:70]) == 0
    with pytest.raises(ValueError):
        region[::2]


def received_through_a_socket(chunks) -> bytes:
    """What the other end of a connected pair reads once `send_with_regions` sent `chunks`."""
    sender, receiver = socket.socketpair()
    received = bytearray()

    def read_all():
        while data := receiver.recv(1 << 16):
            received.extend(data)

    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        send_with_regions(sender, chunks)
    finally:
        sender.close()
        reader.join(10)
        receiver.close()
    assert not reader.is_alive()
    return bytes(received)


def test_buffers_and_regions_arrive_in_order(file_of_bytes):
    fd, data = file_of_bytes
    chunks = [b"head", FileRegion(fd, 7, 100_001), memoryview(b"mid"), b"", FileRegion(fd, 0, len(data)), b"\0"]
    assert received_through_a_socket(chunks) == b"head" + data[7:100_008] + b"mid" + data + b"\0"


def test_regions_alone_and_back_to_back(file_of_bytes):
    fd, data = file_of_bytes
    chunks = [FileRegion(fd, 5, 10), FileRegion(fd, 200_000, 62_144), FileRegion(fd, 0, 0)]
    assert received_through_a_socket(chunks) == data[5:15] + data[200_000:]


def test_a_region_past_the_end_of_its_file_is_an_error_not_a_spin(file_of_bytes):
    fd, data = file_of_bytes
    with pytest.raises(OSError, match="ended 10 bytes short"):
        received_through_a_socket([b"head", FileRegion(fd, len(data) - 5, 15)])
