"""The socket driver: runs a sans-IO `Connection` over one TCP (or TLS) socket.

It owns the socket: TCP_NODELAY on every one, large reads into the
connection, writes of whatever the connection has queued, and timeouts
derived from the connection's ARTIM deadline and the caller's own deadline.
It never polls: a blocking read waits exactly until the next deadline.
"""

from __future__ import annotations

import socket
import ssl
import struct
from time import monotonic

from router.net.connection import Connection
from router.net.gather import write_gathered

READ_SIZE = 1 << 20
SEND_TIMEOUT = 60.0  # a peer that stops reading for this long is treated as gone
EARLY_WAKE = 0.9  # arm the kernel timeout a little short so later, shorter waits reuse it
MICROSECONDS = 1_000_000
_TIMEVAL = struct.Struct("@ll")


def tune_socket(sock: socket.socket) -> None:
    """TCP_NODELAY (no Nagle stalls on small PDUs) and keep-alive on a connected socket."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def open_connection(
    address: tuple[str, int],
    timeout: float | None,
    bind_address: tuple[str, int] | None = None,
    tls: tuple[ssl.SSLContext, str | None] | None = None,
) -> socket.socket:
    """Connect to `address` (OSError on failure), tuned and optionally wrapped in TLS."""
    sock = socket.create_connection(address, timeout=timeout, source_address=bind_address)
    try:
        tune_socket(sock)
        if tls is not None:
            context, hostname = tls
            if hostname is None and context.check_hostname:
                hostname = address[0]  # verify the certificate against the address we dialled
            sock = context.wrap_socket(sock, server_hostname=hostname)
    except (OSError, ssl.SSLError):
        sock.close()
        raise
    return sock


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return _TIMEVAL.pack(whole, max(int((seconds - whole) * MICROSECONDS), 1 if not whole else 0))


class Link:
    """One socket plus its Connection; reads and writes on the caller's thread.

    A plain TCP socket stays in blocking mode and read timeouts are the
    kernel's (SO_RCVTIMEO): Python's own socket timeouts cost a poll() before
    every recv and fcntl() calls on every change. The kernel timeout is only
    re-armed when it would wake us after the deadline; waking early is
    harmless, the read loop simply goes round again. TLS sockets keep
    Python's timeouts.
    """

    def __init__(self, sock: socket.socket, connection: Connection) -> None:
        self.sock = sock
        self._kernel_timeouts = not isinstance(sock, ssl.SSLSocket)
        self._armed: float | None = None  # the SO_RCVTIMEO in force; None = wait forever
        self._buffer = memoryview(bytearray(READ_SIZE))  # reused: no allocation per read
        self._streaming = False  # the last read filled READ_SIZE: the peer streams to us
        if self._kernel_timeouts:
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(SEND_TIMEOUT))
        self.connection = connection
        self.closed = False
        self.interrupted = False
        self.bytes_sent = 0
        self.bytes_received = 0
        self.on_data_received = None  # optional callable(memoryview of what was read, valid during the call)
        self.on_data_sent = None  # optional callable(list of the chunks written)

    now = staticmethod(monotonic)  # the builtin itself: no Python frame, and it is read on every PDU

    def flush(self) -> None:
        """Write every PDU the connection has queued; close once it is back in Sta1."""
        chunks = self.connection.data_to_send()
        if chunks and not self.closed:
            try:
                self.bytes_sent += self._write(chunks)
                if self.on_data_sent is not None:
                    self.on_data_sent(chunks)
            except OSError:
                self.connection.receive_data(b"", self.now())
        if self.connection.is_closed:
            self.close()

    def _write(self, chunks: list[bytes | memoryview]) -> int:
        """Send every chunk, gathered by the kernel (sendmsg) rather than joined here."""
        if len(chunks) == 1 or isinstance(self.sock, ssl.SSLSocket):  # TLS has no sendmsg
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self.sock.sendall(data)
            return len(data)
        write_gathered(self.sock.sendmsg, chunks)
        return sum(map(len, chunks))

    def close(self) -> None:
        """Close the socket without lingering (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def interrupt(self) -> None:
        """Ask the thread serving this link to abort: wakes its blocking read (thread-safe)."""
        self.interrupted = True
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def _arm(self, timeout: float | None) -> None:
        """Make the next recv return by `timeout` (None: wait for data however long)."""
        if not self._kernel_timeouts:
            self.sock.settimeout(timeout)
            return
        if timeout is None:
            if self._armed is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(0))  # 0 = forever
                self._armed = None
            return
        if self._armed is None or self._armed > timeout:
            self._armed = timeout * EARLY_WAKE
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(self._armed))

    def read(self, deadline: float | None) -> bool:
        """Block until data arrives, the connection's timer fires, or `deadline` passes.

        Feeds what arrived (or the expiry) to the connection and flushes its
        replies. Returns False when `deadline` passed with nothing to do, or
        when another thread interrupted the link (the caller then aborts).
        """
        while not self.interrupted:
            now = self.now()
            wake = self.connection.next_deadline()
            if wake is None or deadline is not None and deadline < wake:
                wake = deadline
            if wake is not None and wake <= now:
                self.connection.tick(now)
                self.flush()
                if deadline is not None and deadline <= now:
                    return False
                return True
            if not self._receive(None if wake is None else wake - now) or self.interrupted:
                continue  # timed out (fire the timer or report the deadline) or interrupted
            self.flush()
            return True
        return False

    def poll(self) -> None:
        """Feed the connection whatever has already arrived, without waiting."""
        if self.closed:
            return
        if self._receive(None, wait=False):
            self.flush()

    def _receive(self, timeout: float | None, wait: bool = True) -> bool:
        """One read fed to the connection (an end of transport too); False if nothing came in time.

        A large PDU's rest goes straight into the PDU's own buffer; anything
        else is read as bytes of its own (`_read_bytes`).
        """
        if self.closed:
            self.connection.receive_data(b"", self.now())
            return True
        target = self.connection.pdu_buffer()
        flags = 0
        if wait:
            self._arm(timeout)
        elif self._kernel_timeouts:
            flags = socket.MSG_DONTWAIT
        else:
            self.sock.settimeout(0.0)
        try:
            received = self._read_bytes(flags) if target is None else target[: self.sock.recv_into(target, 0, flags)]
        except (socket.timeout, BlockingIOError, ssl.SSLWantReadError):
            return False  # the timeout passed (or the kernel woke us early: the caller loops)
        except OSError:
            received = b""
        self.bytes_received += len(received)
        if received and self.on_data_received is not None:
            self.on_data_received(memoryview(received))
        if target is not None:
            self.connection.pdu_buffer_filled(len(received), self.now())
        else:
            self.connection.receive_data(received, self.now())
        return True

    def _read_bytes(self, flags: int) -> bytes:
        """One read, as a bytes object of its own.

        While the peer streams (the last read filled READ_SIZE), straight into a
        fresh object: no copy. Otherwise into the reused buffer, copied out: a
        small read costs less to copy than a fresh READ_SIZE object to allocate.
        """
        if self._streaming:
            data = self.sock.recv(READ_SIZE, flags)
        else:
            data = self._buffer[: self.sock.recv_into(self._buffer, 0, flags)].tobytes()
        self._streaming = len(data) == READ_SIZE
        return data
