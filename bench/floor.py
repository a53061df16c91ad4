"""A reference floor: bare Python TCP ping-pong on loopback, no DICOM at all.

`python bench/floor.py serve PORT` answers each read with 96 bytes (TCP_NODELAY on), until killed.
`measure_floor` times N ping-pongs of an 80-byte message over one connection from this
process: the most any Python SCU/SCP pair could do per round trip on this machine.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

REQUEST = b"q" * 80  # about a C-ECHO-RQ in a P-DATA-TF PDU
REPLY = b"r" * 96  # about a C-ECHO-RSP


def serve(port: int) -> None:
    """Answer every read with REPLY, one connection after another, until killed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1)
        while True:
            conn, _ = listener.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.settimeout(60)
                try:
                    while conn.recv(1 << 16):
                        conn.sendall(REPLY)
                except OSError:
                    pass


def start_floor(peers) -> int:
    """Start a `serve` process under `peers` (a bench.procs.Peers); returns its port."""
    from bench.procs import free_port

    port = free_port()
    peers.start("floor", [sys.executable, str(Path(__file__).resolve()), "serve", str(port)], port)
    return port


def floor_run(port: int, count: int, warmup: int = 200) -> float:
    """Round trips/s of `count` bare 80-byte/96-byte ping-pongs over one new connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(warmup):
            conn.sendall(REQUEST)
            conn.recv(1 << 16)
        start = time.perf_counter()
        for _ in range(count):
            conn.sendall(REQUEST)
            conn.recv(1 << 16)
        return count / (time.perf_counter() - start)


def measure_floor(count: int, warmup: int = 200) -> float:
    """One `floor_run` against a `serve` process started (and ended) here."""
    from bench.procs import Peers

    with Peers() as peers:
        return floor_run(start_floor(peers), count, warmup)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
